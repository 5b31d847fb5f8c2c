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
//! | `GET /live/<stream>/<rendition>.m3u8` | live media playlist                           |
//! | `GET /media/<key>`                 | a stored chunk (embedded storage)                |
//! | `GET /api/streams`                 | the streams as JSON                              |
#![forbid(unsafe_code)]

pub mod playlist;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use ladder_index::{Index, IndexError};
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
        .route("/live/{stream}/{file}", get(playlist))
        .route("/media/{*key}", get(media))
        .with_state(Arc::new(config))
}

type Shared = Arc<Config>;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], format!("{what} not found\n")).into_response()
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

async fn playlist(State(config): State<Shared>, Path((stream, file)): Path<(String, String)>) -> Response {
    let Some(name) = file.strip_suffix(".m3u8") else {
        return not_found("playlist");
    };
    let session = match config.index.latest_session(&stream).await {
        Ok(Some(session)) => session,
        Ok(None) => return not_found("stream"),
        Err(e) => return index_error(e),
    };
    let renditions = match config.index.renditions(&stream, &session.session_id).await {
        Ok(renditions) => playlist::current(renditions),
        Err(e) => return index_error(e),
    };
    if name == "master" {
        if renditions.is_empty() {
            return not_found("stream");
        }
        return with_headers(playlist::master(&renditions), PLAYLIST_TYPE, "max-age=2");
    }
    if !renditions.iter().any(|r| r.name == name) {
        return not_found("rendition");
    }
    let segments = config.index.segments(&stream, &session.session_id, name).await;
    let failed = config.index.failed_chunks(&stream, &session.session_id).await;
    let (segments, failed) = match (segments, failed) {
        (Ok(segments), Ok(failed)) => (segments, failed),
        (Err(e), _) | (_, Err(e)) => return index_error(e),
    };
    let ended = session.ended_at_ms.is_some();
    let body =
        playlist::media(&segments, &failed, config.window, session.chunk_count.filter(|_| ended), &config.media_base);
    with_headers(body, PLAYLIST_TYPE, if ended { "max-age=60" } else { "max-age=1" })
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
