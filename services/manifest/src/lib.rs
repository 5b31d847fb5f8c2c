//! # Layout
//! The HTTP face of ladder, over the playlists it keeps in memory and the object storage:
//! - [`playlist`]: writes HLS master and media playlists, LL-HLS included (pure functions, unit-tested);
//! - [`live`]: every stream's playlists in memory, loaded from the index once and then kept up to date by the
//!   events, rendered once per change and published on a `watch` channel per stream;
//! - [`follow`]: the ordered consumers over the event log and the LL-HLS parts that feed [`live`];
//! - this file: the axum routes, blocking playlist reloads, caching headers, media from storage through a cache
//!   that fetches each object once however many ask for it, and the player pages in `assets/`.
//!
//! | route                              | what                                             |
//! |------------------------------------|--------------------------------------------------|
//! | `GET /`                            | page listing the streams                         |
//! | `GET /watch/<stream>`              | player page (hls.js, served from `/assets`)      |
//! | `GET /live/<stream>/master.m3u8`   | master playlist of the stream's latest session   |
//! | `GET /live/<stream>/<rendition>.m3u8` | live media playlist (sliding window), LL-HLS: `?_HLS_msn=&_HLS_part=` blocks until that part exists, `?_HLS_skip=YES` is a delta update |
//! | `GET /dvr/<stream>/<...>.m3u8`     | the same with every retained segment (DVR)       |
//! | `GET /clip/<stream>/<...>.m3u8?from=&to=` | a VOD clip of a wall-clock range          |
//! | `GET /media/<key>`                 | a stored segment or part (embedded storage); a part announced as the next one (the preload hint) is answered once it exists |
//! | `GET /api/streams`                 | the streams as JSON                              |
//! | `GET /t/<token>/<route>`           | any route above for a signed stream ([`signing`]) |
//!
//! Streams named in [`Config::signed_streams`] are served only under `/t/<token>/`, the rest of the path being
//! the same route; a missing, expired or forged token gets 403 with the reason. Every request has a time limit
//! and the number in flight is bounded ([`Config::request_timeout`], [`Config::max_in_flight`]): past it, 503
//! at once instead of a queue.
//!
//! No instance depends on another: each loads what it needs from the index and follows the bus itself, and a
//! restart loses nothing. Every response is rendered from the same events with the same rules, so instances
//! answer alike (ETags hash the body). The waits that depend on time (a missing chunk,
//! [`playlist::GAP_WAIT_MS`]; an ended session's last chunks, [`playlist::IN_FLIGHT_WAIT_MS`]; the end grace)
//! count from times recorded in the events, not from when a request came, so instances disagree only by their
//! clock skew, right at those boundaries.
#![forbid(unsafe_code)]

pub mod follow;
pub mod live;
mod metrics;
pub mod playlist;
pub mod signing;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use bytes::Bytes;
use ladder_bus::{Bus, BusError};
use ladder_index::{Index, IndexError};
use ladder_storage::{ErrorKind, Storage, StorageError};
use live::{Live, Rendered, RenditionView, Snapshot};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub nats_url: String,
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
    /// Bytes of media (segments and parts) kept in memory for `/media/`.
    pub media_cache_bytes: u64,
    /// Whether /media/ also serves source chunks (`live/<stream>/<session>/source/`). Off by default: they are
    /// the publisher's original stream, not meant for viewers.
    pub serve_source: bool,
    /// The keys playback tokens are checked with; `None`: no tokens are accepted.
    pub playback_keys: Option<signing::KeySet>,
    /// The streams whose playlists and media need a token.
    pub signed_streams: signing::SignedStreams,
    /// The longest a request may take; blocking playlist reloads give up before it.
    pub request_timeout: Duration,
    /// Requests served at once (blocking reloads included); past it, 503 with Retry-After.
    pub max_in_flight: usize,
}

/// How long a client may take to send a request's headers, on a new connection or between the requests of a
/// kept-alive one: a client that trickles them (slowloris) or idles is disconnected after this, so it cannot
/// hold connections open for nothing. Longer than the idle timeout of CDNs' origin connections (CloudFront:
/// 5 s by default), so that a CDN does not send a request on a connection this server is closing; as hyper's
/// own default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish their requests once the manifest is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`, over HTTP/1.1 with [`HEADER_READ_TIMEOUT`] (axum::serve
/// has no header timeout); then waits up to [`SHUTDOWN_GRACE`] for the requests in progress.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };
    let graceful = GracefulShutdown::new();
    let mut failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                failures = 0;
                stream
            }
            // Out of file descriptors, a connection reset before accept: wait a little, do not spin.
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot accept an http connection");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::info!("http connections still open after the shutdown grace, closing them"),
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ManifestError> {
    metrics::init();
    let addr = config.http_listen;
    let bus = Bus::connect(&config.nats_url).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ManifestError::Bind { addr, source })?;
    let server = Server::new(config);
    let background = [
        tokio::spawn(follow::follow(bus.clone(), server.live.clone(), false, shutdown.clone())),
        tokio::spawn(follow::follow(bus.clone(), server.live.clone(), true, shutdown.clone())),
        tokio::spawn(follow::tick(server.live.clone(), shutdown.clone())),
    ];
    tracing::info!(%addr, "manifest serving http");
    ladder_telemetry::health::register("manifest: nats", ladder_telemetry::health::nats(bus.jetstream().client()));
    let storage = server.config.storage.clone();
    ladder_telemetry::health::probe("manifest: storage", shutdown.child_token(), move || {
        let storage = storage.clone();
        async move { storage.reachable().await.map_err(|e| e.to_string()) }
    });
    let index = server.config.index.clone();
    ladder_telemetry::health::probe("manifest: index", shutdown.child_token(), move || {
        let index = index.clone();
        async move { index.latest_session("ladder-readyz").await.map(|_| ()).map_err(|e| e.to_string()) }
    });
    let served = serve_http(listener, router_for(server), shutdown).await.map_err(ManifestError::Serve);
    for task in background {
        task.abort();
    }
    bus.drain().await;
    tracing::info!("manifest stopped");
    served
}

/// The state the routes share.
pub struct Server {
    config: Config,
    live: Arc<Live>,
    media: quick_cache::sync::Cache<String, Bytes, ByteWeighter>,
}

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<String, Bytes> for ByteWeighter {
    fn weight(&self, key: &String, value: &Bytes) -> u64 {
        (key.len() + value.len()) as u64
    }
}

impl Server {
    pub fn new(config: Config) -> Arc<Server> {
        let settings = live::Settings {
            window: config.window,
            media_base: config.media_base.clone(),
            end_grace: config.end_grace,
        };
        let live = Arc::new(Live::new(config.index.clone(), settings));
        // About 200 KB an object: segments are bigger, parts smaller.
        let items = (config.media_cache_bytes / 200_000).max(16) as usize;
        let media = quick_cache::sync::Cache::with_weighter(items, config.media_cache_bytes.max(1), ByteWeighter);
        Arc::new(Server { config, live, media })
    }

    /// The longest a blocking request waits: three target durations (RFC 8216bis), but always answered before
    /// the request's time limit.
    fn reload_limit(&self) -> Duration {
        self.config.request_timeout.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(100))
    }

    /// The in-memory playlists, for a caller that feeds them events itself (tests).
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

/// The routes, over playlists followed from the bus by [`run`]; tests that apply events themselves use
/// [`router_for`] with a [`Server`] they feed.
pub fn router(config: Config) -> Router {
    router_for(Server::new(config))
}

pub fn router_for(server: Arc<Server>) -> Router {
    let routes = Router::new()
        .route("/", get(streams_page))
        .route("/watch/{stream}", get(watch_page))
        .route("/assets/hls.min.js", get(hls_js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/streams", get(streams_json))
        .route("/live/{stream}/{file}", get(live))
        .route("/dvr/{stream}/{file}", get(dvr))
        .route("/clip/{stream}/{file}", get(clip))
        .route("/media/{*key}", get(media))
        // Runs after routing (axum applies `layer` to each route), so the route's pattern is known.
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(server.clone());
    let limits = Arc::new(Limits {
        in_flight: Arc::new(tokio::sync::Semaphore::new(server.config.max_in_flight.max(1))),
        timeout: server.config.request_timeout,
    });
    let signed = Signed { server, routes: routes.clone() };
    Router::new()
        .route("/t/{token}/{*rest}", get(signed_request).with_state(signed))
        .merge(routes)
        .layer(axum::middleware::from_fn(cors))
        .layer(axum::middleware::from_fn_with_state(limits, limit))
}

/// The bounds every request is served within.
struct Limits {
    in_flight: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

/// Past [`Config::max_in_flight`] requests at once, 503 straight away (a queue would only add latency to a
/// live stream); past [`Config::request_timeout`], 503.
async fn limit(
    State(limits): State<Arc<Limits>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        metrics::refused("in_flight");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1"), (header::CACHE_CONTROL, "no-store")],
            "too many requests in flight\n",
        )
            .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::refused("timeout");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
                format!("the request took longer than {} s\n", limits.timeout.as_secs_f64()),
            )
                .into_response()
        }
    }
}

/// What the routes of a signed request need: the server (keys) and the routes to hand the request on to.
#[derive(Clone)]
struct Signed {
    server: Shared,
    routes: Router,
}

/// A request that came with a valid token, for the handlers (an extension, so it cannot come from outside).
#[derive(Clone)]
struct Authorized {
    token: String,
}

/// What a signed path opens: `<live|dvr|clip>/<stream>/<file>`, `media/<key of the stream>`, `watch/<stream>`.
fn signed_stream(rest: &str) -> Option<(&str, bool)> {
    let mut parts = rest.split('/');
    match (parts.next()?, parts.next()?, parts.next()) {
        ("live" | "dvr" | "clip", stream, Some(_)) => Some((stream, true)),
        ("media", "live" | "parts", Some(stream)) => Some((stream, false)),
        ("watch", stream, None) => Some((stream, false)),
        _ => None,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn denied(why: signing::Denied) -> Response {
    metrics::refused("token");
    (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")], format!("{why}\n")).into_response()
}

/// `/t/<token>/<route>`: checks the token for the stream of the route, then serves the route as if asked
/// without the prefix. Playlists come back with their `/media/` URIs made relative (`../../media/...`), so
/// that players fetch segments under the same token while the body stays the same for every token; their
/// ETags get a `-t` so a cache never mixes the two forms. Cache lifetimes end when the token does.
async fn signed_request(State(signed): State<Signed>, request: axum::extract::Request) -> Response {
    let path = request.uri().path().to_string();
    let Some((token, rest)) = path.strip_prefix("/t/").and_then(|p| p.split_once('/')) else {
        return not_found("path");
    };
    let Some(keys) = &signed.server.config.playback_keys else { return denied(signing::Denied::NotConfigured) };
    let Some((stream, playlist)) = signed_stream(rest) else { return not_found("path") };
    let now = unix_now();
    let verified = match keys.verify(token, stream, now) {
        Ok(verified) => verified,
        Err(why) => return denied(why),
    };
    if playlist {
        if let Err(why) = verified.opens(rest) {
            return denied(why);
        }
    }
    let uri = match request.uri().query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    let Ok(uri) = uri.parse::<axum::http::Uri>() else { return not_found("path") };
    // A new request rather than this one with its URI changed: this one's extensions hold this route's path
    // parameters and pattern, which the inner route would take for its own.
    let (parts, body) = request.into_parts();
    let mut inner = axum::extract::Request::new(body);
    *inner.method_mut() = parts.method;
    *inner.uri_mut() = uri;
    *inner.version_mut() = parts.version;
    *inner.headers_mut() = parts.headers;
    inner.extensions_mut().insert(Authorized { token: token.to_string() });
    if let Some(tags) = inner.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        if let Ok(value) = HeaderValue::from_str(&tags.replace("-t\"", "\"")) {
            inner.headers_mut().insert(header::IF_NONE_MATCH, value);
        }
    }
    let relative = signed.server.config.media_base == "/media/";
    let response = match tower::ServiceExt::oneshot(signed.routes.clone(), inner).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (mut parts, body) = response.into_parts();
    if let Some(cache) = parts.headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()) {
        if let Ok(value) = HeaderValue::from_str(&cap_max_age(cache, verified.expires_at - now)) {
            parts.headers.insert(header::CACHE_CONTROL, value);
        }
    }
    if let Some(etag) = parts.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if let Some(value) = etag.strip_suffix('"').and_then(|e| HeaderValue::from_str(&format!("{e}-t\"")).ok()) {
            parts.headers.insert(header::ETAG, value);
        }
    }
    let is_playlist = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v == PLAYLIST_TYPE);
    if !(relative && playlist && is_playlist && parts.status == StatusCode::OK) {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "playlist body unreadable\n").into_response();
    };
    let text = String::from_utf8_lossy(&bytes)
        .replace("\n/media/", "\n../../media/")
        .replace("URI=\"/media/", "URI=\"../../media/");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(text))
}

/// A Cache-Control value whose max-age is at most `limit` seconds: a cache must not keep serving a response
/// under a token past the token's expiry.
fn cap_max_age(value: &str, limit: i64) -> String {
    let limit = limit.max(0);
    let mut capped = false;
    let directives: Vec<String> = value
        .split(',')
        .map(str::trim)
        .map(|d| match d.strip_prefix("max-age=").and_then(|n| n.parse::<i64>().ok()) {
            Some(age) if age > limit => {
                capped = true;
                format!("max-age={limit}")
            }
            _ => d.to_string(),
        })
        .collect();
    directives.into_iter().filter(|d| !(capped && d == "immutable")).collect::<Vec<_>>().join(", ")
}

/// Whether a request for `stream` may be served: unsigned streams always, signed ones with a token.
fn allowed(server: &Server, stream: &str, authorized: Option<&Authorized>) -> Result<(), Box<Response>> {
    if authorized.is_none() && server.config.signed_streams.requires(stream) {
        return Err(Box::new(denied(signing::Denied::Missing)));
    }
    Ok(())
}

type Shared = Arc<Server>;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

fn not_found(what: &str) -> Response {
    // Short-lived, so a stream that starts a moment later is not hidden by a cached 404.
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "max-age=1")], format!("{what} not found\n")).into_response()
}

fn index_error(e: IndexError) -> Response {
    tracing::error!(error = %e, "index read failed");
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CACHE_CONTROL, "no-store")], "index unavailable\n").into_response()
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

/// The query strings playlists take: a clip's range, and LL-HLS's blocking reload and delta update.
#[derive(serde::Deserialize, Default)]
struct PlaylistQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "_HLS_msn")]
    msn: Option<String>,
    #[serde(rename = "_HLS_part")]
    part: Option<String>,
    #[serde(rename = "_HLS_skip")]
    skip: Option<String>,
}

async fn live(
    state: State<Shared>,
    Path((stream, file)): Path<(String, String)>,
    Query(query): Query<PlaylistQuery>,
    authorized: Option<Extension<Authorized>>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = allowed(&state, &stream, authorized.as_deref()) {
        return *denied;
    }
    playlist(state, stream, file, Flavor::Live, None, &query, &headers).await
}

async fn dvr(
    state: State<Shared>,
    Path((stream, file)): Path<(String, String)>,
    Query(query): Query<PlaylistQuery>,
    authorized: Option<Extension<Authorized>>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = allowed(&state, &stream, authorized.as_deref()) {
        return *denied;
    }
    playlist(state, stream, file, Flavor::Dvr, None, &query, &headers).await
}

async fn clip(
    state: State<Shared>,
    Path((stream, file)): Path<(String, String)>,
    Query(query): Query<PlaylistQuery>,
    authorized: Option<Extension<Authorized>>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = allowed(&state, &stream, authorized.as_deref()) {
        return *denied;
    }
    let parse = |text: &Option<String>| text.as_deref().and_then(playlist::parse_time);
    let (Some(from_ms), Some(to_ms)) = (parse(&query.from), parse(&query.to)) else {
        return bad_request("a clip needs from= and to=, as Unix milliseconds or RFC 3339 times");
    };
    if to_ms <= from_ms {
        return bad_request("a clip's to= must be after its from=");
    }
    playlist(state, stream, file, Flavor::Clip, Some((from_ms, to_ms)), &query, &headers).await
}

/// A blocking playlist reload (RFC 8216bis 6.2.5.2): the media sequence number and part asked for.
#[derive(Debug, Clone, Copy)]
struct Block {
    msn: u64,
    part: Option<u32>,
}

/// Reads `_HLS_msn` and `_HLS_part`; `Err` with the reason for a 400.
fn blocking(query: &PlaylistQuery) -> Result<Option<Block>, &'static str> {
    let msn = query.msn.as_deref().map(|v| v.parse::<u64>().map_err(|_| "_HLS_msn must be a media sequence number"));
    let part = query.part.as_deref().map(|v| v.parse::<u32>().map_err(|_| "_HLS_part must be a part index"));
    match (msn.transpose()?, part.transpose()?) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("_HLS_part needs _HLS_msn"),
        (Some(msn), part) => Ok(Some(Block { msn, part })),
    }
}

/// How far ahead of the playlist a blocking request may ask: RFC 8216bis answers 400 beyond two segments
/// past the last, or beyond the advance part limit (three part targets' worth of parts).
fn too_far(view: &RenditionView, block: Block) -> bool {
    let newest = view.edge.newest().unwrap_or(0);
    if block.msn > newest + 2 {
        return true;
    }
    let (Some(part), Some(target)) = (block.part, view.part_target) else { return false };
    let target_seconds = target as f64 / playlist::CLOCK;
    let limit = if target_seconds < 1.0 { (3.0 / target_seconds).ceil() as u32 } else { 3 };
    let listed = match view.edge.pending {
        Some((msn, count)) if msn == block.msn => count,
        _ if Some(block.msn) > view.edge.newest() => 0,
        _ => return false,
    };
    part > listed + limit
}

#[allow(clippy::too_many_arguments)]
async fn playlist(
    State(server): State<Shared>,
    stream: String,
    file: String,
    flavor: Flavor,
    range: Option<(i64, i64)>,
    query: &PlaylistQuery,
    headers: &HeaderMap,
) -> Response {
    let Some(name) = file.strip_suffix(".m3u8") else {
        return not_found("playlist");
    };
    let snapshots = match server.live.watch(&stream).await {
        Ok(Some(snapshots)) => snapshots,
        Ok(None) => return not_found("stream"),
        Err(e) => return index_error(e),
    };
    let snapshot: Arc<Snapshot> = snapshots.borrow().clone();
    if !snapshot.exists {
        return not_found("stream");
    }
    if name == "master" {
        let Some(master) = &snapshot.master else { return not_found("stream") };
        let cache = if snapshot.over { CACHE_ENDED } else { CACHE_MASTER };
        return match range {
            Some((from, to)) => {
                metrics::playlist("master");
                let text = playlist::master(&snapshot.current, &format!("?from={from}&to={to}"));
                cached(headers, &Rendered::from_text(text), PLAYLIST_TYPE, cache)
            }
            None => {
                metrics::playlist("master");
                cached(headers, master, PLAYLIST_TYPE, cache)
            }
        };
    }
    let Some(view) = snapshot.renditions.get(name).cloned() else {
        return not_found("rendition");
    };
    let media_base = &server.config.media_base;
    match (flavor, range) {
        (Flavor::Clip, Some((from_ms, to_ms))) => {
            let Some(clip) = view.clip(from_ms, to_ms, media_base) else { return not_found("clip") };
            metrics::playlist("clip");
            let cache = if clip.fixed { CACHE_ENDED.to_string() } else { half_target(view.target_duration) };
            cached(headers, &Rendered::from_text(clip.text), PLAYLIST_TYPE, &cache)
        }
        (Flavor::Dvr, _) => {
            let cache = if view.ended() { CACHE_ENDED.to_string() } else { half_target(view.target_duration) };
            metrics::playlist("dvr");
            cached(headers, view.dvr(media_base), PLAYLIST_TYPE, &cache)
        }
        _ => {
            let block = match blocking(query) {
                Ok(block) => block,
                Err(why) => return bad_request(why),
            };
            let mut view = view;
            if let Some(block) = block.filter(|_| !view.fixed) {
                if too_far(&view, block) {
                    return bad_request("_HLS_msn or _HLS_part is too far ahead of the playlist");
                }
                // Held until the part exists; woken by the changes of this rendition's edge (not by those of
                // the others, nor by polling).
                let wait = Duration::from_secs(3 * view.target_duration.max(1)).min(server.reload_limit());
                let Some(mut edge) = server.live.watch_edge(&stream, name) else { return not_found("stream") };
                let waiting = std::time::Instant::now();
                let ready = tokio::time::timeout(
                    wait,
                    edge.wait_for(|(edge, fixed)| *fixed || edge.has(block.msn, block.part)),
                )
                .await;
                view = match ready {
                    Ok(Ok(_)) => {
                        metrics::blocked("answered", waiting);
                        match snapshots.borrow().renditions.get(name) {
                            Some(view) => view.clone(),
                            None => return not_found("rendition"),
                        }
                    }
                    _ => {
                        metrics::blocked("timed_out", waiting);
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CACHE_CONTROL, "no-store")],
                            "the part asked for did not come in time\n",
                        )
                            .into_response();
                    }
                };
            }
            let skip = matches!(query.skip.as_deref(), Some("YES" | "v2"));
            let body = match (&view.delta, skip) {
                (Some(delta), true) => {
                    metrics::playlist("delta");
                    delta
                }
                _ => {
                    metrics::playlist(if block.is_some() { "live_blocking" } else { "live" });
                    &view.live
                }
            };
            let cache = match (view.fixed, block) {
                (true, _) => CACHE_ENDED.to_string(),
                // The answer to a blocking request never changes: a CDN keeps it (keyed on its query) for six
                // target durations, as Apple advises.
                (false, Some(_)) => format!("public, max-age={}", 6 * view.target_duration.max(1)),
                (false, None) => half_target(view.target_duration),
            };
            cached(headers, body, PLAYLIST_TYPE, &cache)
        }
    }
}

/// About half a target duration, as MediaPackage advises for CDNs in front of live playlists.
fn half_target(target_duration: u64) -> String {
    format!("public, max-age={}", (target_duration / 2).max(1))
}

/// The master changes only when the ladder does: a little longer than media playlists.
const CACHE_MASTER: &str = "public, max-age=5";
/// Playlists that no longer change (an ended stream, a clip). Not for ever: a publisher may come back.
const CACHE_ENDED: &str = "public, max-age=300";

/// A response with its ETag (a hash of the body, the same from every manifest instance) that answers
/// `If-None-Match` with 304.
fn cached(request: &HeaderMap, rendered: &Rendered, content_type: &'static str, cache: &str) -> Response {
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        // Weak comparison (RFC 9110): a CDN that compressed the body sends the tag back as W/"...".
        .is_some_and(|v| {
            v.split(',').map(|tag| tag.trim()).any(|tag| tag.trim_start_matches("W/") == rendered.etag || tag == "*")
        });
    let mut response =
        if matches { StatusCode::NOT_MODIFIED.into_response() } else { rendered.body.clone().into_response() };
    let headers = response.headers_mut();
    if !matches {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(value) = HeaderValue::from_str(cache) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&rendered.etag) {
        headers.insert(header::ETAG, value);
    }
    response
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

async fn media(
    State(server): State<Shared>,
    Path(key): Path<String>,
    authorized: Option<Extension<Authorized>>,
) -> Response {
    if !key.ends_with(".ts") || key.split('/').any(|part| part == ".." || part.is_empty()) {
        return not_found("object");
    }
    // `live/<stream>/...` or `parts/<stream>/...`.
    let Some(stream) = key.split('/').nth(1) else { return not_found("object") };
    if let Err(denied) = allowed(&server, stream, authorized.as_deref()) {
        return *denied;
    }
    if !server.config.serve_source && is_source_chunk(&key) {
        return not_found("object");
    }
    match fetch(&server, &key).await {
        Ok(bytes) => return with_headers(bytes, "video/mp2t", "max-age=31536000, immutable"),
        Err(e) if e.kind != ErrorKind::NotFound => return storage_error(e),
        Err(_) => {}
    }
    // A part not stored yet: the one a playlist hints at next (EXT-X-PRELOAD-HINT). RFC 8216bis 6.2.6: the
    // request is answered once the part exists, with all of it.
    let Some(stream) = key.strip_prefix("parts/").and_then(|rest| rest.split('/').next()) else {
        return not_found("object");
    };
    let Ok(Some(mut snapshots)) = server.live.watch(stream).await else { return not_found("object") };
    let wait = {
        let snapshot = snapshots.borrow();
        let target = snapshot.renditions.values().map(|v| v.target_duration).max().unwrap_or(2);
        Duration::from_secs(3 * target.max(1)).min(server.reload_limit())
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if tokio::time::timeout_at(deadline, snapshots.changed()).await.map_or(true, |changed| changed.is_err()) {
            return not_found("object");
        }
        match fetch(&server, &key).await {
            Ok(bytes) => return with_headers(bytes, "video/mp2t", "max-age=31536000, immutable"),
            Err(e) if e.kind != ErrorKind::NotFound => return storage_error(e),
            Err(_) => {}
        }
    }
}

/// A source chunk's key: `live/<stream>/<session>/source/<seq>.ts` ([`ladder_storage::keys::source_chunk`]).
fn is_source_chunk(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() == 5 && parts[0] == "live" && parts[3] == "source"
}

/// An object from storage, through the cache: objects are write-once, so a copy is good for ever, and
/// concurrent requests for one object fetch it once.
async fn fetch(server: &Server, key: &str) -> Result<Bytes, StorageError> {
    server.media.get_or_insert_async(key, server.config.storage.get(key)).await
}

fn storage_error(e: StorageError) -> Response {
    tracing::error!(error = %e, "storage read failed");
    (StatusCode::BAD_GATEWAY, "storage unavailable\n").into_response()
}

async fn streams_json(State(server): State<Shared>) -> Response {
    match server.config.index.streams().await {
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

async fn watch_page(
    State(server): State<Shared>,
    Path(stream): Path<String>,
    authorized: Option<Extension<Authorized>>,
) -> Response {
    if !stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return not_found("stream");
    }
    if let Err(denied) = allowed(&server, &stream, authorized.as_deref()) {
        return *denied;
    }
    // Under a token, the player asks for the master under the same token.
    let master = match authorized.as_deref() {
        Some(Authorized { token }) => format!("/t/{token}/live/{stream}/master.m3u8"),
        None => format!("/live/{stream}/master.m3u8"),
    };
    let page = include_str!("../assets/watch.html").replace("{{STREAM}}", &stream).replace("{{MASTER}}", &master);
    with_headers(Html(page), "text/html; charset=utf-8", "no-cache")
}

async fn hls_js() -> Response {
    with_headers(include_str!("../assets/hls.min.js"), "text/javascript", "max-age=86400")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn limited(max_in_flight: usize, timeout: Duration) -> Router {
        let limits = Arc::new(Limits { in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)), timeout });
        Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }))
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limits, limit))
    }

    fn get_request(path: &str) -> axum::extract::Request {
        axum::extract::Request::builder().uri(path).body(axum::body::Body::empty()).expect("as the test expects")
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_time_limit_get_503() {
        let response =
            limited(10, Duration::from_secs(2)).oneshot(get_request("/slow")).await.expect("as the test expects");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("as the test expects");
        assert_eq!(&body[..], b"the request took longer than 2 s\n");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_in_flight_limit_get_503_at_once() {
        let router = limited(2, Duration::from_secs(3600));
        let held: Vec<_> = (0..2).map(|_| tokio::spawn(router.clone().oneshot(get_request("/slow")))).collect();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = router.clone().oneshot(get_request("/fast")).await.expect("as the test expects");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        for request in held {
            request.abort();
            let _ = request.await;
        }
        let served = router.oneshot(get_request("/fast")).await.expect("as the test expects");
        assert_eq!(served.status(), StatusCode::OK, "the permits come back when the requests end");
    }

    /// A server of `limited(...)` on a free loopback port, stopped by the token.
    async fn served() -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("as the test expects");
        let addr = listener.local_addr().expect("as the test expects");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_http(listener, limited(10, Duration::from_secs(60)), shutdown.clone()));
        (addr, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_trickles_its_headers_is_disconnected() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, shutdown) = served().await;
        // A complete request is served, on a connection kept alive.
        let mut good = tokio::net::TcpStream::connect(addr).await.expect("as the test expects");
        good.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("as the test expects");
        let mut answer = [0u8; 512];
        let read = good.read(&mut answer).await.expect("as the test expects");
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..read]));
        // Headers that never end: the connection is closed once HEADER_READ_TIMEOUT has passed, not before.
        let started = tokio::time::Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("as the test expects");
        slow.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("as the test expects");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(120), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection is still open after 120 s");
        let waited = started.elapsed();
        assert!(waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT * 2, "closed after {waited:?}");
        // So is a kept-alive connection that sends nothing more.
        let mut idle = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(120), good.read_to_end(&mut idle)).await;
        assert!(closed.is_ok(), "the idle connection is still open after 120 s");
        shutdown.cancel();
    }

    #[test]
    fn cache_lifetimes_end_with_the_token() {
        assert_eq!(cap_max_age("max-age=31536000, immutable", 600), "max-age=600");
        assert_eq!(cap_max_age("public, max-age=1", 600), "public, max-age=1");
        assert_eq!(cap_max_age("no-store", 600), "no-store");
        assert_eq!(signed_stream("live/cam/720p.m3u8"), Some(("cam", true)));
        assert_eq!(signed_stream("media/parts/cam/s/720p/00000001.0.ts"), Some(("cam", false)));
        assert_eq!(signed_stream("watch/cam"), Some(("cam", false)));
        assert_eq!(signed_stream("api/streams"), None);
        assert_eq!(signed_stream("media/other/cam/x.ts"), None);
    }
}
