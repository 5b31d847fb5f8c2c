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

pub mod health;
pub mod trace;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{LazyLock, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio_util::sync::CancellationToken;

/// Live streams that get series of their own, per process, unless `LADDER_METRICS_MAX_STREAMS` says otherwise;
/// the others are counted under the label `_other`.
pub const MAX_STREAM_LABELS: usize = 100;
/// The stream label of every stream past the cap.
pub const OTHER_STREAMS: &str = "_other";
/// Rendition names that get series of their own (ladders are per stream, so names are the operator's).
pub const MAX_RENDITION_LABELS: usize = 64;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));
/// The streams with a label of their own, with how many holders ([`StreamSlot`]) each has here.
static STREAMS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);
/// What removes a stream's series from each per-stream family once its label is released.
type Remover = Box<dyn Fn(&StreamLabels) + Send + Sync>;
static PER_STREAM: LazyLock<Mutex<Vec<Remover>>> = LazyLock::new(Default::default);
/// Streams released, with when: their series stay for [`RELEASED_KEPT`] so the last increments are scraped.
static RELEASED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);
/// How long the series of a released stream stay.
pub const RELEASED_KEPT: Duration = Duration::from_secs(300);
static RENDITIONS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
static MAX_STREAMS: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("LADDER_METRICS_MAX_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(MAX_STREAM_LABELS)
});

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

/// The registry in the OpenMetrics text format (the series of streams released [`RELEASED_KEPT`] ago are
/// removed first).
pub fn encode_metrics() -> String {
    remove_released(Instant::now());
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &lock(&REGISTRY));
    text
}

/// The value of the `stream` label for `stream`: its name while a [`StreamSlot`] of it is held in this process
/// and it got one of the first `LADDER_METRICS_MAX_STREAMS` (100) slots, [`OTHER_STREAMS`] otherwise.
pub fn stream_label(stream: &str) -> String {
    if lock(&STREAMS).contains_key(stream) {
        stream.to_string()
    } else {
        OTHER_STREAMS.to_string()
    }
}

/// A live stream's hold on a label of its own (ingest holds one per session, the segmenter one per owned
/// stream). [`RELEASED_KEPT`] after the last holder lets go, the stream's series are removed from every
/// per-stream family ([`register_per_stream`]): a process has the series of its live streams (at most the
/// cap) and of those that ended in the last minutes.
pub struct StreamSlot {
    name: Option<String>,
}

impl StreamSlot {
    pub fn acquire(stream: &str) -> StreamSlot {
        lock(&RELEASED).remove(stream);
        let mut streams = lock(&STREAMS);
        let max = *MAX_STREAMS;
        let name = if let Some(holders) = streams.get_mut(stream) {
            *holders += 1;
            Some(stream.to_string())
        } else if streams.len() < max {
            streams.insert(stream.to_string(), 1);
            Some(stream.to_string())
        } else {
            None
        };
        StreamSlot { name }
    }

    /// The stream's labels: its own, or `_other` past the cap.
    pub fn labels(&self) -> StreamLabels {
        StreamLabels { stream: self.name.clone().unwrap_or_else(|| OTHER_STREAMS.to_string()) }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        let released = {
            let mut streams = lock(&STREAMS);
            match streams.get_mut(&name) {
                Some(holders) if *holders > 1 => {
                    *holders -= 1;
                    false
                }
                Some(_) => {
                    streams.remove(&name);
                    true
                }
                None => false,
            }
        };
        if released {
            lock(&RELEASED).insert(name, Instant::now());
        }
    }
}

/// Removes the series of the streams released before `now - RELEASED_KEPT` (and not held again since).
fn remove_released(now: Instant) {
    let gone: Vec<String> = {
        let mut released = lock(&RELEASED);
        let gone: Vec<String> = released
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= RELEASED_KEPT)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            released.remove(name);
        }
        gone
    };
    let held = lock(&STREAMS);
    let removers = lock(&PER_STREAM);
    for name in gone.into_iter().filter(|name| !held.contains_key(name)) {
        let labels = StreamLabels { stream: name };
        for remove in removers.iter() {
            remove(&labels);
        }
    }
}

/// [`register`] for a family labelled by stream: a released stream's series are removed from it.
pub fn register_per_stream<M, C>(
    name: &str,
    help: &str,
    family: Family<StreamLabels, M, C>,
) -> Family<StreamLabels, M, C>
where
    Family<StreamLabels, M, C>: prometheus_client::registry::Metric + Clone,
    M: Send + Sync + 'static,
    C: prometheus_client::metrics::family::MetricConstructor<M> + Send + Sync + 'static,
{
    let family = register(name, help, family);
    let handle = family.clone();
    lock(&PER_STREAM).push(Box::new(move |labels| {
        handle.remove(labels);
    }));
    family
}

/// The value of the `rendition` label: the name for the first [`MAX_RENDITION_LABELS`] names this process
/// sees, `_other` after that.
pub fn rendition_label(rendition: &str) -> String {
    let mut renditions = lock(&RENDITIONS);
    if renditions.contains(rendition) || renditions.len() < MAX_RENDITION_LABELS {
        renditions.insert(rendition.to_string());
        return rendition.to_string();
    }
    OTHER_STREAMS.to_string()
}

/// Labels of a series per stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

impl StreamLabels {
    /// The labels of `stream`: its own while a [`StreamSlot`] holds them, `_other` otherwise.
    pub fn of(stream: &str) -> StreamLabels {
        StreamLabels { stream: stream_label(stream) }
    }
}

/// Labels of a series per rendition (names are validated `[a-z0-9_-]{1,32}`, and capped by
/// [`rendition_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenditionLabels {
    pub rendition: String,
}

impl RenditionLabels {
    pub fn of(rendition: &str) -> RenditionLabels {
        RenditionLabels { rendition: rendition_label(rendition) }
    }
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

    /// Serves `GET /metrics`, `/healthz` and `/readyz` ([`health`]) until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), TelemetryError> {
        use axum::http::StatusCode;
        use axum::{http::header, routing::get, Router};
        let app = Router::new()
            .route(
                "/metrics",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        encode_metrics(),
                    )
                }),
            )
            // Alive: the process answers.
            .route("/healthz", get(|| async { "ok\n" }))
            // Ready: every check passes now (NATS connected, the service's own).
            .route(
                "/readyz",
                get(|| async {
                    match health::ready() {
                        Ok(passed) => (StatusCode::OK, format!("ready: {}\n", passed.join(", "))),
                        Err(failed) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", failed.join("; "))),
                    }
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
    fn stream_labels_are_held_while_live_and_capped() {
        let family: Family<StreamLabels, Counter> =
            register_per_stream("telemetry_test_per_stream", "Per stream.", Family::default());
        let slots: Vec<StreamSlot> =
            (0..MAX_STREAM_LABELS + 5).map(|i| StreamSlot::acquire(&format!("cap-{i}"))).collect();
        let other = slots.iter().filter(|slot| slot.labels().stream == OTHER_STREAMS).count();
        assert!(other >= 5, "past the cap: {other}");
        assert_eq!(stream_label("cap-0"), "cap-0");
        family.get_or_create(&slots[0].labels()).inc();
        let again = StreamSlot::acquire("cap-0");
        drop(slots);
        // Still held once: its series stays.
        assert_eq!(stream_label("cap-0"), "cap-0");
        assert!(encode_metrics().contains("telemetry_test_per_stream_total{stream=\"cap-0\"} 1"));
        drop(again);
        assert_eq!(stream_label("cap-0"), OTHER_STREAMS);
        assert!(encode_metrics().contains("stream=\"cap-0\""), "released: its series stay a while");
        remove_released(Instant::now() + RELEASED_KEPT);
        assert!(!encode_metrics().contains("stream=\"cap-0\""), "and then they are gone");
        assert!(lock(&STREAMS).is_empty());
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
