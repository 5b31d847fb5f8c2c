//! # Layout
//! The HTTP face of ladder, read-only over the index and the object storage:
//! - [`playlist`]: writes HLS master and media playlists from the index (pure functions, unit-tested);
//! - this file: the axum routes, caching headers and the player pages in `assets/`.
//!
//! | route                              | what                                             |
//! |------------------------------------|--------------------------------------------------|
//! | `GET /`                            | page listing the streams                         |
//! | `GET /watch/<stream>`              | player page (hls.js, served from `/assets`)      |
//! | `GET /live/<stream>/master.m3u8`   | master playlist of the stream's latest session   |
//! | `GET /live/<stream>/<rendition>.m3u8` | live media playlist (sliding window)          |
//! | `GET /dvr/<stream>/<...>.m3u8`     | the same with every retained segment (DVR)       |
//! | `GET /clip/<stream>/<...>.m3u8?from=&to=` | a VOD clip of a wall-clock range          |
//! | `GET /media/<key>`                 | a stored chunk (embedded storage)                |
//! | `GET /api/streams`                 | the streams as JSON                              |
//!
//! The manifest keeps no state of its own: every response is computed from the index and the clock when it is
//! asked for, so any number of instances answer alike (ETags hash the body), and a manifest or indexer restart
//! loses nothing. The waits that depend on time (a missing chunk, [`playlist::GAP_WAIT_MS`]; an ended session's
//! last chunks, [`playlist::IN_FLIGHT_WAIT_MS`]; the end grace) count from times recorded in the index, not from
//! when a request came, so instances disagree only by their clock skew, right at those boundaries.
#![forbid(unsafe_code)]

pub mod playlist;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use ladder_index::{Index, IndexError, Rendition, Session};
use ladder_storage::{ErrorKind, Storage};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub index: Arc<dyn Index>,
    pub storage: Storage,
    /// Segments in a live media playlist.
    pub window: usize,
    /// Where players fetch segments: `/media/` (this server reads them from storage), or the public base URL
    /// of the bucket or a CDN in front of it, ending with `/`.
    pub media_base: String,
    /// How long after a publisher leaves its playlists end (EXT-X-ENDLIST). A reconnect within it continues
    /// the same playlists.
    pub end_grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ManifestError> {
    let addr = config.http_listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ManifestError::Bind { addr, source })?;
    tracing::info!(%addr, "manifest serving http");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ManifestError::Serve)?;
    tracing::info!("manifest stopped");
    Ok(())
}

pub fn router(config: Config) -> Router {
    Router::new()
        .route("/", get(streams_page))
        .route("/watch/{stream}", get(watch_page))
        .route("/assets/hls.min.js", get(hls_js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/streams", get(streams_json))
        .route("/live/{stream}/{file}", get(live))
        .route("/dvr/{stream}/{file}", get(dvr))
        .route("/clip/{stream}/{file}", get(clip))
        .route("/media/{*key}", get(media))
        .layer(axum::middleware::from_fn(cors))
        .with_state(Arc::new(config))
}

type Shared = Arc<Config>;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

fn not_found(what: &str) -> Response {
    // Short-lived, so a stream that starts a moment later is not hidden by a cached 404.
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "max-age=1")], format!("{what} not found\n")).into_response()
}

fn index_error(e: IndexError) -> Response {
    tracing::error!(error = %e, "index read failed");
    (StatusCode::SERVICE_UNAVAILABLE, "index unavailable\n").into_response()
}

fn with_headers(body: impl IntoResponse, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Which playlists a route serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Live,
    Dvr,
    Clip,
}

#[derive(serde::Deserialize)]
struct ClipRange {
    from: Option<String>,
    to: Option<String>,
}

async fn live(state: State<Shared>, Path((stream, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    playlist(state, stream, file, Flavor::Live, None, &headers).await
}

async fn dvr(state: State<Shared>, Path((stream, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    playlist(state, stream, file, Flavor::Dvr, None, &headers).await
}

async fn clip(
    state: State<Shared>,
    Path((stream, file)): Path<(String, String)>,
    Query(range): Query<ClipRange>,
    headers: HeaderMap,
) -> Response {
    let parse = |text: &Option<String>| text.as_deref().and_then(playlist::parse_time);
    let (Some(from_ms), Some(to_ms)) = (parse(&range.from), parse(&range.to)) else {
        return bad_request("a clip needs from= and to=, as Unix milliseconds or RFC 3339 times");
    };
    if to_ms <= from_ms {
        return bad_request("a clip's to= must be after its from=");
    }
    playlist(state, stream, file, Flavor::Clip, Some((from_ms, to_ms)), &headers).await
}

async fn playlist(
    State(config): State<Shared>,
    stream: String,
    file: String,
    flavor: Flavor,
    range: Option<(i64, i64)>,
    headers: &HeaderMap,
) -> Response {
    let Some(name) = file.strip_suffix(".m3u8") else {
        return not_found("playlist");
    };
    let sessions = match config.index.sessions(&stream).await {
        Ok(sessions) if !sessions.is_empty() => sessions,
        Ok(_) => return not_found("stream"),
        Err(e) => return index_error(e),
    };
    let latest = &sessions[sessions.len() - 1];
    let grace_over =
        |ended_at_ms: Option<i64>| ended_at_ms.is_some_and(|at| now_ms() - at >= config.end_grace.as_millis() as i64);
    if name == "master" {
        let renditions = match current_renditions(&config, &stream, &sessions).await {
            Ok(renditions) => renditions,
            Err(e) => return index_error(e),
        };
        if renditions.is_empty() {
            return not_found("stream");
        }
        let query = range.map(|(from, to)| format!("?from={from}&to={to}")).unwrap_or_default();
        let cache = if grace_over(latest.ended_at_ms) { CACHE_ENDED } else { CACHE_MASTER };
        return cached(headers, playlist::master(&renditions, &query), PLAYLIST_TYPE, cache);
    }
    let mut media = Vec::with_capacity(sessions.len());
    for session in sessions {
        let segments = config.index.segments(&stream, &session.session_id, name).await;
        let failed = config.index.failed_chunks(&stream, &session.session_id).await;
        match (segments, failed) {
            (Ok(segments), Ok(failed)) => media.push(playlist::SessionMedia { session, segments, failed }),
            (Err(e), _) | (_, Err(e)) => return index_error(e),
        }
    }
    let timeline = playlist::timeline(&media, now_ms());
    // A rendition is known if a retained session recorded it (DVR and clips of an earlier ladder) or the
    // ladder in force has it. The second lookup is only needed when the first finds nothing.
    if timeline.entries.is_empty() {
        match current_renditions(&config, &stream, &media.iter().map(|m| m.session.clone()).collect::<Vec<_>>()).await {
            Ok(renditions) if renditions.iter().any(|r| r.name == name) => {}
            Ok(_) => return not_found("rendition"),
            Err(e) => return index_error(e),
        }
    }
    let ended = timeline.complete && grace_over(timeline.ended_at_ms);
    let kind = match (flavor, range) {
        (Flavor::Clip, Some((from_ms, to_ms))) => playlist::Kind::Clip { from_ms, to_ms },
        (Flavor::Dvr, _) => playlist::Kind::Dvr,
        _ => playlist::Kind::Live { window: config.window },
    };
    let Some(body) = playlist::media(&timeline, kind, ended, &config.media_base) else {
        return not_found("clip");
    };
    let cache = if body.fixed {
        CACHE_ENDED.to_string()
    } else {
        // About half a target duration, as MediaPackage advises for CDNs in front of live playlists.
        format!("public, max-age={}", (timeline.target_duration / 2).max(1))
    };
    cached(headers, body.text, PLAYLIST_TYPE, &cache)
}

/// The renditions of the newest session that has any: right after a reconnect, the new session has none until
/// its first chunk is transcoded, and players go on with the previous session's. `sessions` oldest first.
async fn current_renditions(config: &Config, stream: &str, sessions: &[Session]) -> Result<Vec<Rendition>, IndexError> {
    for session in sessions.iter().rev() {
        let found = config.index.renditions(stream, &session.session_id).await?;
        if !found.is_empty() {
            return Ok(playlist::current(found));
        }
    }
    Ok(Vec::new())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The master changes only when the ladder does: a little longer than media playlists.
const CACHE_MASTER: &str = "public, max-age=5";
/// Playlists that no longer change (an ended stream, a clip). Not for ever: a publisher may come back.
const CACHE_ENDED: &str = "public, max-age=300";

/// A response with an ETag (a hash of the body, the same from every manifest instance) that answers
/// `If-None-Match` with 304.
fn cached(request: &HeaderMap, body: String, content_type: &'static str, cache: &str) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        // Weak comparison (RFC 9110): a CDN that compressed the body sends the tag back as W/"...".
        .is_some_and(|v| {
            v.split(',').map(|tag| tag.trim()).any(|tag| tag.trim_start_matches("W/") == etag || tag == "*")
        });
    let mut response = if matches { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let headers = response.headers_mut();
    if !matches {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(value) = HeaderValue::from_str(cache) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// FNV-1a, 64 bits: stable across processes and builds, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// CORS for every response, and answers to preflight requests: players on any origin may read playlists
/// and segments.
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag, Content-Length"));
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Range, If-None-Match"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    }
    response
}

async fn media(State(config): State<Shared>, Path(key): Path<String>) -> Response {
    if !key.ends_with(".ts") || key.split('/').any(|part| part == ".." || part.is_empty()) {
        return not_found("object");
    }
    match config.storage.get(&key).await {
        Ok(bytes) => with_headers(bytes, "video/mp2t", "max-age=31536000, immutable"),
        Err(e) if e.kind == ErrorKind::NotFound => not_found("object"),
        Err(e) => {
            tracing::error!(error = %e, "storage read failed");
            (StatusCode::BAD_GATEWAY, "storage unavailable\n").into_response()
        }
    }
}

async fn streams_json(State(config): State<Shared>) -> Response {
    match config.index.streams().await {
        Ok(sessions) => {
            let list: Vec<serde_json::Value> = sessions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "stream": s.stream,
                        "session": s.session_id,
                        "started_at_ms": s.started_at_ms,
                        "live": s.ended_at_ms.is_none(),
                        "master": format!("/live/{}/master.m3u8", s.stream),
                        "watch": format!("/watch/{}", s.stream),
                    })
                })
                .collect();
            with_headers(serde_json::Value::Array(list).to_string(), "application/json", "no-cache")
        }
        Err(e) => index_error(e),
    }
}

async fn streams_page() -> Response {
    with_headers(Html(include_str!("../assets/index.html")), "text/html; charset=utf-8", "no-cache")
}

async fn watch_page(Path(stream): Path<String>) -> Response {
    if !stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return not_found("stream");
    }
    let page = include_str!("../assets/watch.html").replace("{{STREAM}}", &stream);
    with_headers(Html(page), "text/html; charset=utf-8", "no-cache")
}

async fn hls_js() -> Response {
    with_headers(include_str!("../assets/hls.min.js"), "text/javascript", "max-age=86400")
}
