//! What the manifest counts: HTTP requests by route, the playlists it serves, how long blocking reloads wait,
//! and how long a chunk takes from ingest to its first listing.

use std::{sync::LazyLock, time::Instant};

use axum::{extract::MatchedPath, response::Response};
use ladder_proto::RenditionReady;
use ladder_telemetry::{
    latency_buckets, register, seconds_histograms, Counter, Family, Histogram, HistogramFamily, KindLabels,
    RenditionLabels, RouteLabels, RouteOnlyLabels,
};

pub(crate) struct Metrics {
    pub requests: Family<RouteLabels, Counter>,
    pub request_seconds: HistogramFamily<RouteOnlyLabels>,
    pub playlists: Family<KindLabels, Counter>,
    pub blocked: HistogramFamily<KindLabels>,
    pub refused: Family<KindLabels, Counter>,
    pub listed: Family<RenditionLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: register(
        "ladder_http_requests",
        "HTTP requests answered, by route (the pattern, e.g. /live/{stream}/{file}) and status",
        Family::default(),
    ),
    request_seconds: register(
        "ladder_http_request_duration_seconds",
        "Time to answer an HTTP request, by route; a blocking playlist reload counts its wait",
        seconds_histograms(),
    ),
    playlists: register(
        "ladder_manifest_playlists_served",
        "Playlists answered (200 or 304), by kind: master, live, live_blocking, delta, dvr, clip",
        Family::default(),
    ),
    blocked: register(
        "ladder_manifest_blocked_reload_seconds",
        "How long LL-HLS blocking reloads (_HLS_msn) waited, by outcome: answered or timed_out (503)",
        seconds_histograms(),
    ),
    refused: register(
        "ladder_http_refused",
        "HTTP requests refused, by reason: in_flight (503, over --max-in-flight), timeout (503, over \
         --request-timeout), token (403, a signed stream without a valid playback token)",
        Family::default(),
    ),
    listed: register(
        "ladder_ingest_to_playlist_seconds",
        "From a chunk's last packet at ingest to the chunk in the live playlist of this manifest, by rendition",
        Family::new_with_constructor(latency_histogram as fn() -> Histogram),
    ),
});

pub(crate) fn init() {
    let m = LazyLock::force(&METRICS);
    for kind in ["master", "live", "live_blocking", "delta", "dvr", "clip"] {
        let _ = m.playlists.get_or_create(&KindLabels { kind });
    }
    for kind in ["in_flight", "timeout", "token"] {
        let _ = m.refused.get_or_create(&KindLabels { kind });
    }
}

pub(crate) fn playlist(kind: &'static str) {
    METRICS.playlists.get_or_create(&KindLabels { kind }).inc();
}

pub(crate) fn refused(reason: &'static str) {
    METRICS.refused.get_or_create(&KindLabels { kind: reason }).inc();
}

pub(crate) fn blocked(outcome: &'static str, since: Instant) {
    METRICS.blocked.get_or_create(&KindLabels { kind: outcome }).observe(since.elapsed().as_secs_f64());
}

/// A segment new to this manifest's playlists.
pub(crate) fn listed(ready: &RenditionReady, now_ms: i64) {
    let Some(timing) = &ready.timing else { return };
    if timing.ingest_last_packet_ms <= 0 {
        return;
    }
    let latency = (now_ms - timing.ingest_last_packet_ms).max(0) as f64 / 1000.0;
    METRICS.listed.get_or_create(&RenditionLabels::of(&ready.rendition)).observe(latency);
}

/// Counts every request by its route (never its path: stream names and keys would make series without end).
pub(crate) async fn track(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let began = Instant::now();
    let response = next.run(request).await;
    let m = &*METRICS;
    m.request_seconds.get_or_create(&RouteOnlyLabels { route: route.clone() }).observe(began.elapsed().as_secs_f64());
    m.requests.get_or_create(&RouteLabels { route, status: response.status().as_u16() }).inc();
    response
}
