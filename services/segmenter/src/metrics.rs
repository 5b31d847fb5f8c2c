//! What the segmenter counts.

use std::sync::LazyLock;

use ladder_telemetry::{register, register_per_stream, Counter, Family, Gauge, Histogram, StreamLabels, StreamSlot};

pub(crate) struct Metrics {
    pub chunks: Family<StreamLabels, Counter>,
    pub chunk_bytes: Family<StreamLabels, Counter>,
    pub chunk_duration: Histogram,
    pub owned: Gauge,
    pub sessions: Counter,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    chunks: register_per_stream(
        "ladder_segmenter_chunks",
        "Chunks cut, stored and announced (chunk.uploaded)",
        Family::default(),
    ),
    chunk_bytes: register_per_stream("ladder_segmenter_chunk_bytes", "Bytes of the chunks stored", Family::default()),
    chunk_duration: register(
        "ladder_segmenter_chunk_duration_seconds",
        "Media duration of the chunks cut",
        Histogram::new([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 30.0]),
    ),
    owned: register("ladder_segmenter_streams_owned", "Streams this segmenter holds the lease of", Gauge::default()),
    sessions: register("ladder_segmenter_sessions_closed", "Publisher sessions cut to their end", Counter::default()),
});

pub(crate) fn init() {
    LazyLock::force(&METRICS);
    ladder_telemetry::init_chunk_failures("segmenter");
}

/// A chunk stored and announced: logged (at debug: one a chunk duration per stream) and counted.
pub(crate) struct ChunkUploaded<'a> {
    pub stream: &'a str,
    pub sequence: u64,
    pub duration_s: f64,
    pub size: u64,
}

impl ChunkUploaded<'_> {
    pub fn emit(self) {
        tracing::debug!(stream = %self.stream, sequence = self.sequence, duration_s = self.duration_s, size = self.size, "chunk uploaded");
        let labels = StreamLabels::of(self.stream);
        METRICS.chunks.get_or_create(&labels).inc();
        METRICS.chunk_bytes.get_or_create(&labels).inc_by(self.size);
        METRICS.chunk_duration.observe(self.duration_s);
    }
}

/// A stream owned by this instance, for the gauge, however ownership ends; it holds the stream's label.
pub(crate) struct Owned(#[allow(dead_code)] StreamSlot);

impl Owned {
    pub fn new(stream: &str) -> Owned {
        METRICS.owned.inc();
        Owned(StreamSlot::acquire(stream))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        METRICS.owned.dec();
    }
}
