//! What the transcoder counts.

use std::sync::LazyLock;

use ladder_telemetry::{
    register, seconds_histograms, Counter, Family, Gauge, Histogram, HistogramFamily, KindLabels, RenditionLabels,
};

pub(crate) struct Metrics {
    pub queue_wait: Histogram,
    pub ffmpeg: HistogramFamily<RenditionLabels>,
    pub renditions_ready: Family<RenditionLabels, Counter>,
    pub parts: Family<RenditionLabels, Counter>,
    pub attempts: Family<KindLabels, Counter>,
    pub busy: Gauge,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    queue_wait: register(
        "ladder_transcoder_queue_wait_seconds",
        "Age of a chunk (since its first byte reached ingest) when a worker starts on it",
        Histogram::new(ladder_telemetry::latency_buckets()),
    ),
    ffmpeg: register(
        "ladder_transcoder_ffmpeg_seconds",
        "From ffmpeg's start on a chunk to the rendition's last byte out (a live chunk arrives while it runs)",
        seconds_histograms(),
    ),
    renditions_ready: register(
        "ladder_transcoder_renditions_ready",
        "Rendition chunks stored and announced (rendition.ready)",
        Family::default(),
    ),
    parts: register("ladder_transcoder_parts", "LL-HLS parts stored and announced (part.ready)", Family::default()),
    attempts: register(
        "ladder_transcoder_attempts",
        "Chunk attempts by outcome: done, retried, failed (for good), dropped (source refused), handed_back",
        Family::default(),
    ),
    busy: register("ladder_transcoder_busy_workers", "Chunks being transcoded by this process", Gauge::default()),
});

pub(crate) fn init() {
    let m = LazyLock::force(&METRICS);
    for kind in ["done", "retried", "failed", "dropped", "handed_back"] {
        let _ = m.attempts.get_or_create(&KindLabels { kind });
    }
    ladder_telemetry::init_chunk_failures("transcoder");
}

pub(crate) fn attempt(kind: &'static str) {
    METRICS.attempts.get_or_create(&KindLabels { kind }).inc();
}

pub(crate) fn rendition(name: &str) -> RenditionLabels {
    RenditionLabels::of(name)
}

/// One chunk in the hands of a worker, for the gauge.
pub(crate) struct Busy(());

impl Busy {
    pub fn new() -> Busy {
        METRICS.busy.inc();
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        METRICS.busy.dec();
    }
}
