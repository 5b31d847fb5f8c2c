//! # Layout
//! The ingest service: one SRT listener that accepts many publishers and forwards their MPEG-TS, unchanged
//! but cut into whole-packet batches, to JetStream on `ingest.ts.<stream>`. Any number of ingest instances
//! (hosts or ports) may share one NATS: they share one namespace of stream names.
//!
//! - [`run`] (this file): connects to NATS, binds the SRT listener and decides whether a publisher is
//!   accepted. At the handshake its streamid must name a valid stream ([`parse_stream_id`]), its encryption
//!   must match the configured passphrase, no other publisher may be live on the same name on this instance
//!   (`LiveNames`, which also settles two handshakes racing here) nor, as far as a read of the claims bucket
//!   tells, on another one: these are refused with an SRT reject code. Once the handshake has succeeded
//!   (passphrase verified) the name is claimed cluster-wide; if another instance won it meanwhile, the
//!   connection is closed. One task per connection. If srt-tokio's listener task dies, a new one takes over
//!   the same UDP socket. On shutdown it stops accepting, lets every session end (bounded), then closes the
//!   listener.
//! - [`claims`]: the cluster-wide claim of a stream name (JetStream KV `ladder_publishers`): taken after the
//!   handshake, renewed while the session lives, released when it ends, expired by NATS a few seconds after
//!   its ingest died. Independent of the SRT library.
//! - [`stream_id`]: the two streamid syntaxes and the stream name rules.
//! - `session`: one accepted publisher: `StreamStarted`, the TS messages (headers `Ladder-Session`,
//!   `Ladder-Seq`, `Ladder-Received-Ms`), the END marker (`Ladder-End`, `Ladder-End-Reason`). Each message
//!   is retried with the same id until JetStream stores it, while SRT keeps being read into a queue bounded
//!   in bytes, so a NATS outage of seconds (a restart, an election) loses nothing.
//! - `ts`: re-alignment of SRT payloads to 188-byte TS packets and batching (64 KiB or 50 ms).
//!
//! What a consumer can rely on, per session: `stream.started.<stream>` is stored before any TS message; TS
//! messages carry whole TS packets and consecutive sequence numbers from 0, each stored once; the last
//! message of a session is an empty one with `Ladder-End: 1` and `Ladder-End-Reason` (`disconnected`,
//! `shutdown` or `error: ...`), except when the session's claim was lost to another publisher or its ingest
//! died: then the session stops without one. Sessions of one name never interleave. Ingest does not publish
//! `stream.ended`: the segmenter does, once it has cut the session's last chunk and knows the chunk count (a
//! second `stream.ended` from ingest would be de-duplicated in its place).
#![forbid(unsafe_code)]

pub mod claims;
mod session;
pub mod stream_id;
mod ts;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use claims::{Claims, Holder};
use futures::StreamExt;
use ladder_bus::{now_ms, Bus, BusError};
use srt_protocol::{
    options::{KeySize, Passphrase},
    packet::CoreRejectReason,
    settings::KeySettings,
};
use srt_tokio::{
    access::{RejectReason, ServerRejectReason},
    ConnectionRequest, SrtListener,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use stream_id::{parse_stream_id, StreamIdError};

/// How long sessions get to publish what they queued and their END marker after shutdown starts. A session
/// still waiting for NATS then is aborted; its claim expires on its own.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the SRT handshake may take after ingest accepted the request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before replacing a listener task that died, so a repeating failure cannot spin.
const LISTENER_RESTART_DELAY: Duration = Duration::from_millis(100);
/// How long closing the SRT listener may take.
const LISTENER_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Configuration of the ingest service.
#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    /// UDP address of the SRT listener, `0.0.0.0:9000` by default.
    pub srt_listen: SocketAddr,
    /// SRT AES passphrase (10 to 79 characters). With one, publishers must encrypt with it; without, they
    /// must not encrypt.
    pub passphrase: Option<String>,
    /// SRT receive latency: how long SRT may spend recovering lost packets (120 ms by default).
    pub latency: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("srt_listen", &self.srt_listen)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<redacted>"))
            .field("latency", &self.latency)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid configuration {key}: {message}")]
    Config { key: &'static str, message: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot bind the srt listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Runs ingest until `shutdown` is cancelled: accepts SRT publishers on `config.srt_listen` and publishes
/// their TS and stream events to NATS. Returns after every session has ended (bounded by [`SHUTDOWN_GRACE`]).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IngestError> {
    let passphrase = config.passphrase.map(validate_passphrase).transpose()?;
    let bus = tokio::select! {
        bus = Bus::connect(&config.nats_url) => bus?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let claims = tokio::select! {
        claims = Claims::open(&bus) => claims?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let addr = config.srt_listen;
    let bind_error = |source| IngestError::Bind { addr, source };
    // Ingest owns the UDP socket and hands srt-tokio a duplicate, so that a listener task that died can be
    // replaced on the same port at once (see `ListenerExit::Died`).
    let udp = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    udp.set_nonblocking(true).map_err(bind_error)?;
    tracing::info!(
        %addr,
        encrypted = passphrase.is_some(),
        latency_ms = config.latency.as_millis() as u64,
        "srt listener started"
    );

    let acceptor = Arc::new(Acceptor {
        bus: bus.clone(),
        claims,
        host: claims::hostname(),
        listen: addr.to_string(),
        passphrase,
        live: LiveNames::default(),
    });
    let mut sessions = JoinSet::new();
    let listener = loop {
        let socket = udp.try_clone().and_then(tokio::net::UdpSocket::from_std).map_err(bind_error)?;
        let (listener, mut incoming) = SrtListener::builder()
            .receive_latency(config.latency)
            .socket(socket)
            .bind(addr)
            .await
            .map_err(bind_error)?;
        let exit = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break ListenerExit::Shutdown,
                request = incoming.incoming().next() => match request {
                    Some(request) => {
                        sessions.spawn(Arc::clone(&acceptor).handle(request, shutdown.clone()));
                    }
                    None => break ListenerExit::Died,
                },
                Some(done) = sessions.join_next(), if !sessions.is_empty() => log_task_end(done),
            }
        };
        match exit {
            ListenerExit::Shutdown => break listener,
            ListenerExit::Died => {
                // srt-tokio 0.4 panics in its listener task on some handshakes (an encrypting publisher when
                // no passphrase is configured). The connections it carried are gone with it; new publishers
                // are accepted again by a fresh listener on the same socket.
                tracing::error!(%addr, "srt listener task died, restarting it");
                drop(listener);
                tokio::time::sleep(LISTENER_RESTART_DELAY).await;
            }
        }
    };

    tracing::info!(sessions = sessions.len(), "ingest stopping, ending sessions");
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = sessions.join_next().await {
            log_task_end(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "sessions did not end within the grace period, aborting them"
        );
        sessions.shutdown().await;
    }
    // In its own task: srt-tokio's `close` panics if the listener task has died in the meantime.
    let close = tokio::spawn(async move {
        let mut listener = listener;
        listener.close().await
    });
    match tokio::time::timeout(LISTENER_CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "closing the srt listener failed"),
        Err(_) => tracing::warn!("closing the srt listener timed out"),
    }
    bus.drain().await;
    tracing::info!("ingest stopped");
    Ok(())
}

enum ListenerExit {
    Shutdown,
    /// The srt-tokio listener task ended without being asked to.
    Died,
}

fn validate_passphrase(passphrase: String) -> Result<Passphrase, IngestError> {
    let len = passphrase.len();
    Passphrase::try_from(passphrase).map_err(|_| IngestError::Config {
        key: "passphrase",
        message: format!("must be 10 to 79 bytes long, got {len}"),
    })
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "session task panicked");
        }
    }
}

// === impl Acceptor ===

/// Decides about connection requests and starts sessions.
struct Acceptor {
    bus: Bus,
    claims: Claims,
    /// This instance, as named in its claims.
    host: String,
    listen: String,
    passphrase: Option<Passphrase>,
    live: LiveNames,
}

/// Why a connection request is refused, with the SRT reject code the publisher receives.
struct Refusal {
    code: RejectReason,
    reason: String,
}

impl Acceptor {
    async fn handle(self: Arc<Self>, request: ConnectionRequest, shutdown: CancellationToken) {
        let remote = request.remote();
        let stream_id = request.stream_id().map(|id| id.to_string());
        let (live, key_settings) = match self.admit(stream_id.as_deref(), request.key_size()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::warn!(%remote, streamid = ?stream_id, reason = %refusal.reason, code = ?refusal.code, "publisher refused");
                if let Err(e) = request.reject(refusal.code).await {
                    tracing::debug!(%remote, error = %e, "cannot send the rejection");
                }
                return;
            }
        };
        let stream = live.name().to_string();
        // Another instance's live publisher is refused here, with the reject code a publisher understands.
        // Only a read: nothing is claimed before the passphrase is verified. If NATS does not answer, the
        // claim below decides.
        match self.claims.holder(&stream).await {
            Ok(Some(holder)) => {
                let reason = format!("stream {stream} already has a live publisher: {holder}");
                tracing::warn!(%remote, streamid = ?stream_id, %reason, "publisher refused");
                if let Err(e) = request.reject(RejectReason::Server(ServerRejectReason::Conflict)).await {
                    tracing::debug!(%remote, error = %e, "cannot send the rejection");
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(%stream, %remote, error = %e, "cannot check the publisher claim before the handshake")
            }
        }
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, request.accept(key_settings)) => accepted,
            _ = shutdown.cancelled() => {
                tracing::info!(%stream, %remote, "handshake abandoned: shutting down");
                return;
            }
        };
        let socket = match accepted {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => {
                // srt-tokio reports a handshake it rejected itself (wrong or missing passphrase) this way.
                let reason = if self.passphrase.is_some() {
                    "handshake failed: wrong or missing passphrase"
                } else {
                    "handshake failed"
                };
                tracing::warn!(%stream, %remote, error = %e, reason, "publisher refused");
                return;
            }
            Err(_) => {
                tracing::warn!(%stream, %remote, "publisher refused: handshake timed out");
                return;
            }
        };
        let started_at_ms = now_ms();
        let session = session::new_session_id(started_at_ms);
        let holder = Holder {
            host: self.host.clone(),
            pid: std::process::id(),
            listen: self.listen.clone(),
            session: session.clone(),
            remote: remote.to_string(),
        };
        let claim = match self.claims.claim(&stream, &holder).await {
            Ok(claim) => claim,
            Err(e) => {
                // Won by a publisher on another instance since the check above, or NATS is unreachable.
                tracing::warn!(%stream, %remote, reason = %e, "publisher refused, closing the connection");
                let mut socket = socket;
                session::close(&mut socket).await;
                return;
            }
        };
        let admitted = session::Admitted { live, claim, session, started_at_ms };
        session::run(self.bus.jetstream().clone(), admitted, remote, socket, shutdown).await;
    }

    /// The stream name (claimed) and key settings of an acceptable request.
    fn admit(&self, stream_id: Option<&str>, key_size: KeySize) -> Result<(LiveName, Option<KeySettings>), Refusal> {
        let stream = parse_stream_id(stream_id).map_err(|e| Refusal {
            code: RejectReason::Server(match e {
                StreamIdError::NotPublish(_) => ServerRejectReason::BadMode,
                _ => ServerRejectReason::BadRequest,
            }),
            reason: e.to_string(),
        })?;
        let key_settings = key_settings(self.passphrase.as_ref(), key_size)?;
        let live = self.live.claim(&stream).ok_or_else(|| Refusal {
            code: RejectReason::Server(ServerRejectReason::Conflict),
            reason: format!("stream {stream} already has a live publisher"),
        })?;
        Ok((live, key_settings))
    }
}

/// Key settings to accept with.
///
/// A libsrt caller (ffmpeg, OBS) announces its key length in the handshake only when `pbkeylen` is set;
/// otherwise `key_size` is `Unspecified`, which srt-tokio takes as AES-128 (libsrt's default). So whether a
/// caller encrypts is not known before srt-tokio processes its keying material. srt-tokio 0.4 requires the
/// key size given here to equal the announced one (it panics otherwise), hence it is mirrored. A wrong
/// passphrase, or no encryption when a passphrase is configured, then fails the handshake.
fn key_settings(passphrase: Option<&Passphrase>, key_size: KeySize) -> Result<Option<KeySettings>, Refusal> {
    match (passphrase, key_size) {
        (None, KeySize::Unspecified) => Ok(None),
        (None, _) => Err(Refusal {
            code: RejectReason::Core(CoreRejectReason::Unsecure),
            reason: "publisher encrypts but ingest has no passphrase configured".to_string(),
        }),
        (Some(passphrase), key_size) => Ok(Some(KeySettings { key_size, passphrase: passphrase.clone() })),
    }
}

// === impl LiveNames ===

/// Stream names that have a connected publisher, so two publishers never interleave one stream.
#[derive(Default, Clone)]
struct LiveNames(Arc<Mutex<HashSet<String>>>);

impl LiveNames {
    /// Claims `name`; `None` if it is already live.
    fn claim(&self, name: &str) -> Option<LiveName> {
        let mut names = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !names.insert(name.to_string()) {
            return None;
        }
        Some(LiveName { names: self.clone(), name: name.to_string() })
    }
}

/// A claimed stream name, released when dropped (when the session ends, however it ends).
pub(crate) struct LiveName {
    names: LiveNames,
    name: String,
}

impl LiveName {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LiveName {
    fn drop(&mut self) {
        let mut names = self.names.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        names.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_name_is_claimed_once_until_released() {
        let live = LiveNames::default();
        let first = live.claim("cam-1").expect("free");
        assert!(live.claim("cam-1").is_none());
        let other = live.claim("cam-2").expect("other names are independent");
        drop(first);
        assert!(live.claim("cam-1").is_some(), "released on drop");
        drop(other);
    }

    #[test]
    fn encryption_must_match_the_configuration() {
        let passphrase = Passphrase::try_from("0123456789abc".to_string()).expect("valid");
        assert!(matches!(key_settings(None, KeySize::Unspecified), Ok(None)));
        assert!(key_settings(None, KeySize::AES128).is_err());
        let mirrored = key_settings(Some(&passphrase), KeySize::Unspecified).ok().flatten().expect("key settings");
        assert_eq!(mirrored.key_size, KeySize::Unspecified);
        let accepted = key_settings(Some(&passphrase), KeySize::AES256).ok().flatten().expect("key settings");
        assert_eq!(accepted.key_size, KeySize::AES256);
    }

    #[test]
    fn passphrase_length_is_validated() {
        assert!(validate_passphrase("0123456789".into()).is_ok());
        assert!(validate_passphrase("x".repeat(79)).is_ok());
        let err = validate_passphrase("short".into()).expect_err("too short");
        assert_eq!(err.to_string(), "invalid configuration passphrase: must be 10 to 79 bytes long, got 5");
        assert!(validate_passphrase("x".repeat(80)).is_err());
    }

    #[test]
    fn the_passphrase_is_not_printed() {
        let config = Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            srt_listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            passphrase: Some("very secret words".into()),
            latency: Duration::from_millis(120),
        };
        assert!(!format!("{config:?}").contains("secret"));
    }
}
