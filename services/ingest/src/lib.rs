//! # Layout
//! The ingest service: one SRT listener (libsrt, through [`ladder_srt`]) that accepts many publishers and
//! forwards their MPEG-TS, unchanged but cut into whole-packet batches, to JetStream on
//! `ingest.ts.<stream>`. Any number of ingest instances (hosts or ports) may share one NATS: they share one
//! namespace of stream names and one set of stream keys.
//!
//! - [`run`] (this file): connects to NATS, loads the stream keys, binds the listener and starts a session
//!   per accepted connection. On shutdown it stops accepting, lets every session end (bounded), then drains
//!   NATS.
//! - `gate`: the decision at the handshake, made inside libsrt's listen callback from memory only: the
//!   streamid must name a valid stream ([`parse_stream_id`]); ingest must have room (`--max-publishers`);
//!   the name must not be live here or, as far as the followed claims tell, on another instance; the stream
//!   must have a key (its own, `ladder stream set-key`, else the server's `--passphrase`) or open
//!   publishing must be on. A key becomes the connection's passphrase, so libsrt itself refuses a wrong one
//!   (`BADSECRET`), a missing one and an unexpected one (`UNSECURE`). Every refusal is a warning with its
//!   reject code and a count.
//! - [`claims`]: the cluster-wide claim of a stream name (JetStream KV `ladder_publishers`): taken once the
//!   handshake has succeeded (so the passphrase is verified: nobody can squat a name without its key),
//!   renewed while the session lives, released when it ends, expired by NATS a few seconds after its
//!   ingest died. Also followed into memory for the gate.
//! - [`stream_id`]: the two streamid syntaxes and the stream name rules.
//! - `session`: one accepted publisher: `StreamStarted`, the TS messages (headers `Ladder-Session`,
//!   `Ladder-Seq`, `Ladder-Received-Ms`), the END marker (`Ladder-End`, `Ladder-End-Reason`), and the
//!   connection's libsrt statistics every few seconds on core NATS (`stats.srt.<stream>`, not retained).
//!   Each message is retried with the same id until JetStream stores it, while SRT keeps being read into a
//!   queue bounded in bytes, so a NATS outage of seconds (a restart, an election) loses nothing.
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
mod gate;
mod metrics;
mod session;
pub mod stream_id;
// Public only for the fuzz target (`fuzz/fuzz_targets/realigner.rs`): not part of ingest's API.
#[doc(hidden)]
pub mod ts;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use claims::{Claims, Holder};
use gate::Gate;
use ladder_bus::{keys::StreamKeys, now_ms, Bus, BusError};
use ladder_srt::{Connection, FailedHandshake, Incoming, Listener, ListenerConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use stream_id::{parse_stream_id, StreamIdError};

/// How long sessions get to publish what they queued and their END marker after shutdown starts. A session
/// still waiting for NATS then is aborted; its claim expires on its own.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default of [`Config::max_publishers`].
pub const DEFAULT_MAX_PUBLISHERS: usize = 1000;
/// Core NATS subjects on which the control API asks for a stream's publisher to be disconnected:
/// `control.kick.<stream>`, answered with a [`ladder_proto::v1::KickReply`] by the ingest that has it.
pub const KICK_PREFIX: &str = "control.kick";

/// Default of [`Config::stats_interval`].
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Configuration of the ingest service.
#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    /// UDP address of the SRT listener, `0.0.0.0:9000` by default.
    pub srt_listen: SocketAddr,
    /// The key (SRT passphrase, 10 to 79 characters) of every stream that has none of its own. Unset: such a
    /// stream is open if [`Config::open_publish`], refused otherwise.
    pub passphrase: Option<String>,
    /// Whether a stream without a key may be published unencrypted by anyone who can reach the port. On for
    /// `ladder dev`; meant to be off in production, where every stream gets a key.
    pub open_publish: bool,
    /// Publishers this instance takes at once (connected and in the handshake); more are refused with
    /// `OVERLOAD`.
    pub max_publishers: usize,
    /// SRT receive latency: how long SRT may spend recovering lost packets (120 ms by default).
    pub latency: Duration,
    /// How often each connection's statistics are published.
    pub stats_interval: Duration,
}

impl Config {
    pub fn new(nats_url: &str, srt_listen: SocketAddr) -> Config {
        Config {
            nats_url: nats_url.to_string(),
            srt_listen,
            passphrase: None,
            open_publish: false,
            max_publishers: DEFAULT_MAX_PUBLISHERS,
            latency: Duration::from_millis(120),
            stats_interval: DEFAULT_STATS_INTERVAL,
        }
    }
}

impl Config {
    /// Checks the settings [`run`] refuses, naming the bad one (`IngestError::Config::key` is the field).
    pub fn validate(&self) -> Result<(), IngestError> {
        if let Some(passphrase) = &self.passphrase {
            ladder_bus::keys::validate_key(passphrase)
                .map_err(|e| IngestError::Config { key: "passphrase", message: e.to_string() })?;
        }
        if self.max_publishers == 0 {
            return Err(IngestError::Config { key: "max_publishers", message: "must be at least 1".into() });
        }
        if self.stats_interval < Duration::from_millis(100) {
            return Err(IngestError::Config {
                key: "stats_interval",
                message: format!("{:?} is too short (at least 100 ms)", self.stats_interval),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("srt_listen", &self.srt_listen)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<redacted>"))
            .field("open_publish", &self.open_publish)
            .field("max_publishers", &self.max_publishers)
            .field("latency", &self.latency)
            .field("stats_interval", &self.stats_interval)
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
    Bind { addr: SocketAddr, source: ladder_srt::SrtError },
}

/// Runs ingest until `shutdown` is cancelled: accepts SRT publishers on `config.srt_listen` and publishes
/// their TS and stream events to NATS. Returns after every session has ended (bounded by [`SHUTDOWN_GRACE`]).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IngestError> {
    config.validate()?;
    metrics::init();
    let bus = tokio::select! {
        bus = Bus::connect(&config.nats_url) => bus?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let claims = tokio::select! {
        claims = Claims::open(&bus) => claims?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    // The keys are all in memory before the first handshake can be decided.
    let keys = tokio::select! {
        keys = async { StreamKeys::open(&bus).await?.watch(shutdown.child_token()).await } => keys?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let held = claims.follow(shutdown.child_token());
    let gate = Arc::new(Gate::new(keys, held, config.passphrase.clone(), config.open_publish, config.max_publishers));

    let addr = config.srt_listen;
    let listener_config = ListenerConfig { latency: config.latency, ..ListenerConfig::new(addr) };
    let mut listener = Listener::bind(&listener_config, gate::Admission(Arc::clone(&gate)))
        .map_err(|source| IngestError::Bind { addr, source })?;
    tracing::info!(
        addr = %listener.local_addr(),
        open_publish = config.open_publish,
        server_key = config.passphrase.is_some(),
        max_publishers = config.max_publishers,
        latency_ms = config.latency.as_millis() as u64,
        "srt listener started"
    );
    ladder_telemetry::health::register("ingest: nats", ladder_telemetry::health::nats(bus.jetstream().client()));

    let acceptor = Arc::new(Acceptor {
        bus: bus.clone(),
        claims,
        gate,
        host: claims::hostname(),
        listen: listener.local_addr().to_string(),
        stats_interval: config.stats_interval,
        live: Default::default(),
    });
    let kicks = tokio::spawn(Arc::clone(&acceptor).answer_kicks(shutdown.child_token()));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            incoming = listener.next() => match incoming {
                Some(Incoming::Connection(connection)) => {
                    sessions.spawn(Arc::clone(&acceptor).handle(connection, shutdown.clone()));
                }
                Some(Incoming::Failed(failed)) => acceptor.failed(failed),
                None => {
                    tracing::error!(%addr, "the srt listener stopped accepting");
                    break;
                }
            },
            Some(done) = sessions.join_next(), if !sessions.is_empty() => log_task_end(done),
        }
    }
    // No new publishers from here on; the live ones get the grace period to end.
    drop(listener);

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
    kicks.abort();
    bus.drain().await;
    tracing::info!("ingest stopped");
    Ok(())
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "session task panicked");
        }
    }
}

// === impl Acceptor ===

/// Starts sessions for the connections the gate let through.
struct Acceptor {
    bus: Bus,
    claims: Claims,
    gate: Arc<Gate>,
    /// This instance, as named in its claims.
    host: String,
    listen: String,
    stats_interval: Duration,
    /// The sessions of this instance by stream, with what disconnects each (a kick).
    live: std::sync::Mutex<std::collections::HashMap<String, (String, CancellationToken)>>,
}

impl Acceptor {
    async fn handle(self: Arc<Self>, connection: Connection, shutdown: CancellationToken) {
        let remote = connection.peer();
        // The gate reserved the name for this socket in the callback.
        let Some(live) = self.gate.accepted(connection.id(), connection.stream_id()) else {
            tracing::warn!(%remote, streamid = connection.stream_id(), "accepted connection without a reservation, closing it");
            return;
        };
        let stream = live.name().to_string();
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
                // Won by a publisher on another instance since the gate looked, or NATS is unreachable.
                tracing::warn!(%stream, %remote, reason = %e, "publisher refused, closing the connection");
                return;
            }
        };
        let kick = CancellationToken::new();
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(stream.clone(), (session.clone(), kick.clone()));
        let admitted = session::Admitted { live, claim, session: session.clone(), started_at_ms, kick };
        session::run(&self.bus, admitted, connection, self.stats_interval, shutdown).await;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(&stream).is_some_and(|(id, _)| *id == session) {
            live.remove(&stream);
        }
    }

    /// Answers the control API's kicks (`control.kick.<stream>`) for the streams this instance has a publisher
    /// of; the other instances stay silent, so the API hears from the one that kicked.
    async fn answer_kicks(self: Arc<Self>, shutdown: CancellationToken) {
        let client = self.bus.jetstream().client();
        let mut kicks = match client.subscribe(format!("{KICK_PREFIX}.*")).await {
            Ok(kicks) => kicks,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to kicks: the control API cannot disconnect publishers");
                return;
            }
        };
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => return,
                request = futures::StreamExt::next(&mut kicks) => match request {
                    Some(request) => request,
                    None => return,
                },
            };
            let Some(stream) = request.subject.as_str().strip_prefix(&format!("{KICK_PREFIX}.")) else { continue };
            let Some(reply) = request.reply.clone() else { continue };
            let found = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(stream).cloned();
            let Some((session, kick)) = found else { continue };
            tracing::warn!(%stream, %session, "kicked by the control api, disconnecting the publisher");
            kick.cancel();
            let answer = ladder_proto::v1::KickReply { session_id: session, ingest: self.host.clone() };
            if let Err(e) = client.publish(reply, prost::Message::encode_to_vec(&answer).into()).await {
                tracing::warn!(%stream, error = %e, "cannot answer a kick");
            }
        }
    }

    /// A handshake the gate let through that libsrt then refused (a wrong or missing passphrase) or that did
    /// not complete.
    fn failed(&self, failed: FailedHandshake) {
        self.gate.failed(&failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_validated() {
        let base = Config::new("nats://127.0.0.1:4222", SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert!(base.validate().is_ok());
        let short = Config { passphrase: Some("short".into()), ..base.clone() };
        let err = short.validate().expect_err("too short");
        assert!(err.to_string().starts_with("invalid configuration passphrase: "), "{err}");
        assert!(Config { passphrase: Some("x".repeat(80)), ..base.clone() }.validate().is_err());
        assert!(Config { passphrase: Some("x".repeat(79)), ..base.clone() }.validate().is_ok());
        assert!(Config { max_publishers: 0, ..base.clone() }.validate().is_err());
        assert!(Config { stats_interval: Duration::from_millis(10), ..base }.validate().is_err());
    }

    #[test]
    fn the_passphrase_is_not_printed() {
        let config = Config {
            passphrase: Some("very secret words".into()),
            ..Config::new("nats://127.0.0.1:4222", SocketAddr::from(([0, 0, 0, 0], 9000)))
        };
        assert!(!format!("{config:?}").contains("secret"));
    }
}
