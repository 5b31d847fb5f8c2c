//! What ingest counts, and the typed events that log and count at once.

use std::sync::{LazyLock, Mutex};

use ladder_srt::Stats;
use ladder_telemetry::{register, register_per_stream, Counter, Family, Gauge, ReasonLabels, StreamLabels, StreamSlot};

pub(crate) struct Metrics {
    pub publishers: Gauge,
    pub accepted: Counter,
    pub refused: Family<ReasonLabels, Counter>,
    pub bytes: Family<StreamLabels, Counter>,
    pub messages: Family<StreamLabels, Counter>,
    pub srt_rtt: Family<StreamLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub srt_receive_rate: Family<StreamLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub srt_receive_buffer: Family<StreamLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub srt_lost: Family<StreamLabels, Counter>,
    pub srt_retransmitted: Family<StreamLabels, Counter>,
    pub srt_dropped: Family<StreamLabels, Counter>,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    publishers: register("ladder_ingest_publishers", "Publishers connected to this ingest", Gauge::default()),
    accepted: register("ladder_ingest_publishers_accepted", "Publishers accepted", Counter::default()),
    refused: register(
        "ladder_ingest_publishers_refused",
        "Publishers refused, by reject reason (BADSECRET: wrong passphrase, OVERLOAD: too many, ...)",
        Family::default(),
    ),
    bytes: register_per_stream("ladder_ingest_bytes", "TS bytes stored in JetStream", Family::default()),
    messages: register_per_stream("ladder_ingest_messages", "Raw TS messages stored in JetStream", Family::default()),
    srt_rtt: register("ladder_srt_rtt_seconds", "Round-trip time to the publisher, per stream", Family::default()),
    srt_receive_rate: register(
        "ladder_srt_receive_rate_bytes_per_second",
        "Receive rate of the publisher's connection",
        Family::default(),
    ),
    srt_receive_buffer: register(
        "ladder_srt_receive_buffer_seconds",
        "Data in libsrt's receive buffer, in seconds",
        Family::default(),
    ),
    srt_lost: register_per_stream(
        "ladder_srt_packets_lost",
        "Packets the receiver reported lost (each may have been recovered by a retransmission)",
        Family::default(),
    ),
    srt_retransmitted: register_per_stream(
        "ladder_srt_packets_retransmitted",
        "Retransmitted packets received",
        Family::default(),
    ),
    srt_dropped: register_per_stream(
        "ladder_srt_packets_dropped",
        "Packets given up as too late to play: lost for good",
        Family::default(),
    ),
});

/// Creates ingest's series, so that they exist (at zero) before the first publisher.
pub(crate) fn init() {
    LazyLock::force(&METRICS);
}

/// A publisher refused: one warning (rate-limited by the caller) and one count.
pub(crate) fn refused(reason: &str) {
    METRICS.refused.get_or_create(&ReasonLabels { reason: reason.to_string() }).inc();
}

/// The publisher gauge of one connected publisher, decremented however the session ends.
pub(crate) struct Connected(());

impl Connected {
    pub fn new() -> Connected {
        METRICS.accepted.inc();
        METRICS.publishers.inc();
        Connected(())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        METRICS.publishers.dec();
    }
}

/// A stream's SRT series, fed from the connection's statistics (libsrt's totals since the connection began,
/// turned into counter increments). It holds the stream's label for the session: its series are removed when
/// the last holder of the label in this process lets go.
pub(crate) struct SrtSeries {
    slot: StreamSlot,
    last: Mutex<(u64, u64, u64)>,
}

impl SrtSeries {
    pub fn new(stream: &str) -> SrtSeries {
        SrtSeries { slot: StreamSlot::acquire(stream), last: Mutex::new((0, 0, 0)) }
    }

    pub fn labels(&self) -> StreamLabels {
        self.slot.labels()
    }

    pub fn observe(&self, stats: &Stats) {
        let m = &*METRICS;
        let labels = self.slot.labels();
        m.srt_rtt.get_or_create(&labels).set(stats.rtt_ms / 1000.0);
        m.srt_receive_rate.get_or_create(&labels).set(stats.recv_rate_mbps * 1e6 / 8.0);
        m.srt_receive_buffer.get_or_create(&labels).set(f64::from(stats.recv_buffer_ms) / 1000.0);
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        let now = (count(stats.packets_lost), count(stats.packets_retransmitted), count(stats.packets_dropped));
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        m.srt_lost.get_or_create(&labels).inc_by(now.0.saturating_sub(last.0));
        m.srt_retransmitted.get_or_create(&labels).inc_by(now.1.saturating_sub(last.1));
        m.srt_dropped.get_or_create(&labels).inc_by(now.2.saturating_sub(last.2));
        *last = now;
    }
}

impl Drop for SrtSeries {
    /// The connection's gauges go with it (an alert on a live stream keys on them); the counters stay.
    fn drop(&mut self) {
        let labels = self.slot.labels();
        if labels.stream == ladder_telemetry::OTHER_STREAMS {
            return;
        }
        let m = &*METRICS;
        m.srt_rtt.remove(&labels);
        m.srt_receive_rate.remove(&labels);
        m.srt_receive_buffer.remove(&labels);
    }
}

/// One raw TS message stored.
pub(crate) fn stored(stream: &StreamLabels, bytes: usize) {
    METRICS.bytes.get_or_create(stream).inc_by(bytes as u64);
    METRICS.messages.get_or_create(stream).inc();
}
