//! What every ladder service reports about itself: Prometheus metrics (this file) and OpenTelemetry traces
//! ([`trace`]).
//!
//! Metrics are defined once, next to the thing they count, in a `metrics.rs` of each crate: a struct of
//! `prometheus-client` metrics registered here, in one process-wide registry, the first time it is used. Where
//! a service already logs an event (a chunk cut, a publisher refused), one typed event both logs and counts,
//! as vector's internal events do, so the log line and the series cannot drift apart. [`MetricsServer`] serves
//! the registry at `GET /metrics` (`--metrics-listen`); `ladder dev` runs the five services in one process,
//! so one endpoint has them all.
//!
//! Label cardinality is bounded: the only unbounded value, the stream name, goes through [`stream_label`],
//! which gives the first [`MAX_STREAM_LABELS`] names their own series and puts the others under `_other`.

pub mod trace;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{LazyLock, Mutex, MutexGuard},
};

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio_util::sync::CancellationToken;

/// Streams that get series of their own; the others are counted under the label `_other`.
pub const MAX_STREAM_LABELS: usize = 100;
/// The stream label of every stream past [`MAX_STREAM_LABELS`].
pub const OTHER_STREAMS: &str = "_other";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));
static STREAMS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("metrics server failed: {0}")]
    Serve(std::io::Error),
    #[error("OTLP exporter: {0}")]
    Otlp(String),
}

/// Registers `metric` in the process's registry under `name` (without the `_total` of a counter: the encoder
/// adds it) and returns it. Registering a name twice is a bug; the second series would be encoded twice.
pub fn register<M>(name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    lock(&REGISTRY).register(name, help, metric.clone());
    metric
}

/// The registry in the OpenMetrics text format.
pub fn encode_metrics() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &lock(&REGISTRY));
    text
}

/// The value of the `stream` label for `stream`: the name itself for the first [`MAX_STREAM_LABELS`] streams
/// this process has seen, [`OTHER_STREAMS`] for any other.
pub fn stream_label(stream: &str) -> String {
    let mut streams = lock(&STREAMS);
    if streams.contains(stream) {
        return stream.to_string();
    }
    if streams.len() < MAX_STREAM_LABELS {
        streams.insert(stream.to_string());
        return stream.to_string();
    }
    OTHER_STREAMS.to_string()
}

/// Labels of a series per stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

impl StreamLabels {
    /// The labels of `stream`, capped by [`stream_label`].
    pub fn of(stream: &str) -> StreamLabels {
        StreamLabels { stream: stream_label(stream) }
    }
}

/// Labels of a series per rendition (a ladder has a handful; names are validated `[a-z0-9_-]{1,32}`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenditionLabels {
    pub rendition: String,
}

/// Labels of a series per reason (a bounded set: reject codes, failure stages).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels of a series per pipeline stage (`segmenter`, `transcoder`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

/// Labels of a series per storage operation (`put`, `get`, `list`, `delete`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

/// Labels of a failed storage operation: the operation and the kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationErrorLabels {
    pub operation: &'static str,
    pub kind: &'static str,
}

/// Labels of an HTTP request: its route (the pattern, never the path itself) and status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

/// Labels of a series per route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnlyLabels {
    pub route: String,
}

/// Labels of a series per kind (of playlist, of wait outcome, ...), a bounded set named in code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Labels of a series per kind of event (its subject prefix: `chunk.uploaded`, `rendition.ready`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

/// Labels of a series per JetStream durable consumer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub stream: String,
    pub consumer: String,
}

/// Buckets for durations from a millisecond to about a minute (doubling).
pub fn seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

/// Buckets for end-to-end latencies of a live stream: 0.25 s to about 2 minutes.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0].into_iter()
}

/// A new histogram with [`seconds_buckets`].
pub fn seconds_histogram() -> Histogram {
    Histogram::new(seconds_buckets())
}

/// A family of histograms with [`seconds_buckets`].
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A new family of histograms with [`seconds_buckets`].
pub fn seconds_histograms<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(seconds_histogram as fn() -> Histogram)
}

static CHUNKS_FAILED: LazyLock<Family<StageLabels, Counter>> = LazyLock::new(|| {
    register(
        "ladder_chunks_failed",
        "Chunks announced failed (chunk.failed), by the stage that failed them: segmenter or transcoder",
        Family::default(),
    )
});

/// Counts a `chunk.failed` announced by `stage`. Both stages count into one series family, defined here.
pub fn chunk_failed(stage: &str) {
    CHUNKS_FAILED.get_or_create(&StageLabels { stage: stage.to_string() }).inc();
}

/// Creates the series of `stage`'s chunk failures at zero, so an alert can tell "none" from "not scraped".
pub fn init_chunk_failures(stage: &str) {
    let _ = CHUNKS_FAILED.get_or_create(&StageLabels { stage: stage.to_string() });
}

/// The `/metrics` endpoint, bound (so that a port in use is an error at start-up) but not yet serving.
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, TelemetryError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| TelemetryError::Listen { addr, source })?;
        Ok(MetricsServer { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), TelemetryError> {
        use axum::{http::header, routing::get, Router};
        let app = Router::new().route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    encode_metrics(),
                )
            }),
        );
        if let Some(addr) = self.local_addr() {
            tracing::info!(%addr, "serving metrics at /metrics");
        }
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(TelemetryError::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_labels_are_capped() {
        for i in 0..MAX_STREAM_LABELS + 5 {
            let name = format!("cap-test-{i}");
            let label = stream_label(&name);
            // Other tests of this process may have taken some of the labels first.
            assert!(label == name || label == OTHER_STREAMS);
        }
        assert_eq!(stream_label("cap-test-after-the-cap"), OTHER_STREAMS);
        assert!(lock(&STREAMS).len() <= MAX_STREAM_LABELS);
    }

    #[test]
    fn registered_metrics_are_encoded() {
        let chunks: Family<StreamLabels, Counter> = register("telemetry_test_chunks", "Chunks", Family::default());
        chunks.get_or_create(&StreamLabels { stream: "a".into() }).inc_by(3);
        let text = encode_metrics();
        assert!(text.contains("telemetry_test_chunks_total{stream=\"a\"} 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
