//! # Layout
//! Everything ladder knows about NATS JetStream, in one place:
//! - [`topology`]: the JetStream streams (raw TS, events, LL-HLS parts) and the durable consumers, declared
//!   once and brought in place by [`Bus::connect`] without overriding what an operator changed (see its
//!   module doc);
//! - [`kv`]: the key-value buckets (segmenter leases and checkpoints, publisher claims, stream keys);
//! - [`follow`]: ordered consumers that keep their start when async-nats re-creates them;
//! - [`keys`]: per-stream publish keys (SRT passphrases): set by an operator, watched live by ingest;
//! - [`Bus`]: a connection with typed publishing of [`Event`]s and [`PartReady`]s (deterministic `Nats-Msg-Id`)
//!   and of raw TS. A publish waits for the JetStream acknowledgement and retries the same message for up to 30 s (a NATS
//!   restart, a leader election); a publish that JetStream drops as a duplicate is compared with the stored
//!   message, and different content is [`BusError::DuplicateConflict`], never a silent success;
//! - [`server`]: starts real `nats-server -js` processes, one or a cluster, for `ladder dev` and the tests.
//!
//! # Replicas
//! Streams, consumers and key-value buckets that ladder creates get [`Bus::replicas`] copies: 3 on a cluster
//! of three nodes or more, one per node on a smaller cluster, 1 on a single server (counted from the server's
//! `INFO` at connect time), or the value of `LADDER_NATS_REPLICAS` ([`REPLICAS_ENV`], 1 to 5) when it is set.
//! Existing streams and buckets keep the replicas they have; consumers follow their stream's.
#![forbid(unsafe_code)]

pub mod auth;
pub mod follow;
pub mod keys;
pub mod kv;
pub mod metrics;
pub mod server;
pub mod topology;

use std::{path::PathBuf, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::PullConsumer,
    message::{OutboundMessage, PublishMessage},
    publish::PublishAck,
};
use bytes::Bytes;
use ladder_proto::{Event, PartReady};
use prost::Message as _;

pub use async_nats;
pub use auth::{Credentials, Refusals};
pub use keys::{KeyError, KeyView, StreamKeys};

/// How long [`Bus::connect`] keeps trying to set up the streams, consumers and buckets.
const ENSURE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers carried by raw TS messages on `ingest.ts.<stream>`.
pub mod header {
    /// Publish session the bytes belong to.
    pub const SESSION: &str = "Ladder-Session";
    /// Position of the message within its session, from 0.
    pub const SEQUENCE: &str = "Ladder-Seq";
    /// Unix milliseconds at which ingest received the last byte of the message.
    pub const RECEIVED_MS: &str = "Ladder-Received-Ms";
    /// Present (value "1") on the empty message that closes a session.
    pub const END: &str = "Ladder-End";
    /// On the closing message: why the session ended ("disconnected", "shutdown", "error: ...").
    pub const END_REASON: &str = "Ladder-End-Reason";
}

/// Environment variable that sets how many copies JetStream keeps of every stream, consumer and key-value
/// bucket that ladder creates (1 to 5). Without it, the count follows the cluster; see [`Bus::connect`].
pub const REPLICAS_ENV: &str = "LADDER_NATS_REPLICAS";

/// Replicas on a cluster of this many nodes or more: three copies survive one node lost at any moment.
const AUTO_REPLICAS: usize = 3;
/// JetStream's limit.
const MAX_REPLICAS: usize = 5;
/// A publish is retried until it is stored or this much time has passed.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
const PUBLISH_RETRY_FIRST: Duration = Duration::from_millis(100);
const PUBLISH_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long [`Bus::connect`] waits for a first server to answer.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid {REPLICAS_ENV} {value:?}: expected a number of replicas from 1 to {MAX_REPLICAS}")]
    InvalidReplicas { value: String },
    /// The server refused the login: wrong user, password, token or credentials file. Not retried.
    #[error("NATS at {url} refused {credentials:?}: {reason}")]
    Refused { url: String, credentials: Credentials, reason: String },
    #[error("NATS credentials: {0}")]
    Credentials(String),
    /// The server's permissions do not allow this connection to publish to `subject`: never retried, a
    /// deployment error (see deploy/nats/ladder.conf).
    #[error("NATS does not allow this service to publish to {subject}: {refusal}")]
    Forbidden { subject: String, refusal: String },
    #[error("no NATS server answered at {url} within {waited:?}")]
    NoServer { url: String, waited: Duration },
    #[error("invalid NATS URL {url:?}: {source}")]
    InvalidUrl { url: String, source: std::io::Error },
    #[error("cannot set up JetStream {what}: {message}")]
    Topology { what: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    /// JetStream already holds a message with this `Nats-Msg-Id` whose content differs: the publish was
    /// dropped as a duplicate. A bug (two writers disagree about one fact), never retried.
    #[error("publish to {subject} conflicts with the stored message {message_id:?}: same id, different content")]
    DuplicateConflict { subject: String, message_id: String },
}

/// A connection to NATS with the ladder topology in place.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
    refusals: Refusals,
}

impl Bus {
    /// Connects and creates the streams, consumers and key-value buckets if they do not exist yet
    /// ([`topology::ensure`]). `url` may list several servers of a cluster, comma-separated; the client also
    /// learns the others from the cluster. It waits for a first server, and once connected it reconnects
    /// forever: a NATS restart or a lost node is an outage to wait out, not a reason to exit.
    ///
    /// What ladder creates gets [`Bus::replicas`] copies: the value of [`REPLICAS_ENV`] if it is set,
    /// otherwise 3 on a cluster of three nodes or more and one copy per node on a smaller one, counted from
    /// the cluster's client URLs in the server's `INFO`.
    pub async fn connect(url: &str) -> Result<Bus, BusError> {
        let configured = match std::env::var(REPLICAS_ENV) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(value)) => {
                return Err(BusError::InvalidReplicas { value: value.to_string_lossy().into_owned() })
            }
        };
        Bus::connect_with(url, configured.as_deref()).await
    }

    /// [`Bus::connect`] with the value of [`REPLICAS_ENV`] given rather than read from the environment.
    /// Credentials come from `url` or from the file named by [`auth::CREDS_ENV`] (see [`auth`]).
    pub async fn connect_with(url: &str, replicas: Option<&str>) -> Result<Bus, BusError> {
        let configured = replicas.map(parse_replicas).transpose()?;
        let creds_file = std::env::var_os(auth::CREDS_ENV).filter(|path| !path.is_empty()).map(PathBuf::from);
        let (servers, credentials) = auth::parse(url, creds_file)?;
        let shown = auth::redact(url);
        let refusals = Refusals::default();
        let client = first_connection(&servers, &credentials, &refusals, &shown).await?;
        let info = client.server_info();
        let replicas = configured.unwrap_or_else(|| replicas_for_cluster(&info));
        tracing::info!(
            server = %info.server_name,
            cluster = info.cluster.as_deref().unwrap_or(""),
            nodes = info.connect_urls.len().max(1),
            replicas,
            "connected to nats"
        );
        let js = jetstream::new(client.clone());
        // A cluster that is starting, or electing a leader, times requests out for a few seconds: retried.
        let deadline = tokio::time::Instant::now() + ENSURE_TIMEOUT;
        let mut pause = Duration::from_millis(250);
        loop {
            match topology::ensure(&js, replicas).await {
                Ok(()) => break,
                // A request the permissions do not allow goes unanswered: waiting longer cannot help.
                Err(e) if let Some(refusal) = refusals.of_prefix("$JS.API.") => {
                    return Err(BusError::Topology {
                        what: "streams, consumers and buckets".into(),
                        message: format!(
                            "{e}; NATS refused: {refusal}. This user may not create or change them: run \
                             `ladder setup` as a user that may (deploy/nats/ladder.conf), then start the service"
                        ),
                    });
                }
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, "setting up jetstream failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Bus { client, js, replicas, refusals })
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// How many copies of a stream, consumer or key-value bucket ladder creates (see [`Bus::connect`]).
    /// Existing ones keep the replicas they have.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Publishes an event and waits until JetStream has stored it (see [`Bus::publish_ts`] for the retries).
    /// If JetStream already holds an event with the same `Nats-Msg-Id`, the stored one must have the same
    /// content ([`Event::same_content`]), otherwise this is [`BusError::DuplicateConflict`].
    pub async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        let subject = event.subject();
        let message = PublishMessage::build().payload(Bytes::from(event.encode())).message_id(event.message_id());
        self.publish(subject, message, Expected::Event(event)).await
    }

    /// Publishes an LL-HLS part announcement on `LADDER_PARTS` and waits until JetStream has stored it, with the
    /// retries of [`Bus::publish_ts`]. Its `Nats-Msg-Id` is [`PartReady::message_id`]: a worker that redoes a
    /// chunk announces the same part again, which JetStream drops (a different one is
    /// [`BusError::DuplicateConflict`]).
    pub async fn publish_part(&self, part: &PartReady) -> Result<(), BusError> {
        let message = PublishMessage::build().payload(Bytes::from(part.encode_to_vec())).message_id(part.message_id());
        self.publish(part.subject(), message, Expected::Part(part)).await
    }

    /// Publishes raw TS bytes of one session and waits until JetStream has stored them; the message's
    /// `Nats-Msg-Id` must be unique and deterministic for the bytes. A failed attempt (NATS unreachable, no
    /// acknowledgement, no stream leader for the moment) is retried with the same message, so the same
    /// `Nats-Msg-Id`, backing off from 100 ms to 2 s, for up to 30 s: a NATS restart or a leader election
    /// takes seconds. If JetStream already holds a message with this id, its payload and `Ladder-*` headers
    /// must be the same byte for byte, otherwise this is [`BusError::DuplicateConflict`].
    pub async fn publish_ts(&self, stream: &str, message: PublishMessage) -> Result<(), BusError> {
        self.publish(topology::ingest_subject(stream), message, Expected::Raw).await
    }

    async fn publish(&self, subject: String, message: PublishMessage, expected: Expected<'_>) -> Result<(), BusError> {
        // What consumes the message continues the trace of the span publishing it (if traces are exported).
        let message = ladder_telemetry::trace::with_context(message);
        // The builder keeps its fields private; its outbound form shows what is sent, for the duplicate check.
        let sent = message.clone().outbound_message(subject.clone());
        let message_id = sent
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|id| id.as_str().to_string())
            .unwrap_or_default();
        let started = tokio::time::Instant::now();
        let mut pause = PUBLISH_RETRY_FIRST;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let stored = match self.js.send_publish(subject.clone(), message.clone()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let failure = match stored {
                Ok(ack) if !ack.duplicate => {
                    if attempt > 1 {
                        tracing::info!(%subject, attempts = attempt, "publish stored after retries");
                    }
                    return Ok(());
                }
                // A retry after a lost acknowledgement, or another instance that published the same fact.
                Ok(ack) => match self.check_duplicate(&subject, &message_id, &sent, &ack, &expected).await {
                    Ok(()) => return Ok(()),
                    Err(conflict @ BusError::DuplicateConflict { .. }) => return Err(conflict),
                    Err(e) => e.to_string(),
                },
                Err(e) if is_refusal(&e) => {
                    return Err(BusError::Publish { subject, message: format!("refused by jetstream: {e}") })
                }
                Err(e) => e.to_string(),
            };
            if let Some(refusal) = self.refusals.of_subject(&subject) {
                return Err(BusError::Forbidden { subject, refusal });
            }
            if started.elapsed() + pause > PUBLISH_DEADLINE {
                return Err(BusError::Publish {
                    subject,
                    message: format!("not stored after {attempt} attempts in {:?}: {failure}", started.elapsed()),
                });
            }
            tracing::warn!(%subject, message_id, attempt, error = %failure, "publish failed, retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PUBLISH_RETRY_MAX);
        }
    }

    /// JetStream answered `duplicate`: it stored a message with this `Nats-Msg-Id` before. Its publish
    /// acknowledgement carries the stored message's sequence (nats-server 2.9 and later; `tests/publish.rs`
    /// checks it), so the stored message is fetched and compared with the one sent.
    async fn check_duplicate(
        &self,
        subject: &str,
        message_id: &str,
        sent: &OutboundMessage,
        ack: &PublishAck,
        expected: &Expected<'_>,
    ) -> Result<(), BusError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let error = |e: &dyn std::fmt::Display| BusError::Publish {
            subject: subject.to_string(),
            message: format!("cannot read the message this one duplicates ({} #{}): {e}", ack.stream, ack.sequence),
        };
        let stream = self.js.get_stream(&ack.stream).await.map_err(|e| error(&e))?;
        let stored = match stream.get_raw_message(ack.sequence).await {
            Ok(stored) => stored,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                // Removed by the stream's limits since: there is nothing left to disagree with.
                tracing::warn!(%subject, message_id, stream = %ack.stream, sequence = ack.sequence, "the message a duplicate publish repeats is gone, cannot compare");
                return Ok(());
            }
            Err(e) => return Err(error(&e)),
        };
        let stored_id = stored.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|id| id.as_str());
        if stored_id != Some(message_id) {
            tracing::warn!(%subject, message_id, stored_id, sequence = ack.sequence, "the duplicate's sequence holds another message, cannot compare");
            return Ok(());
        }
        let same = stored.subject.as_str() == subject
            && match expected {
                Expected::Event(event) => {
                    Event::decode(subject, &stored.payload).is_ok_and(|stored| event.same_content(&stored))
                }
                Expected::Part(part) => PartReady::decode(stored.payload.as_ref()).is_ok_and(|stored| {
                    PartReady { stored_ms: 0, ..stored } == PartReady { stored_ms: 0, ..(*part).clone() }
                }),
                Expected::Raw => {
                    stored.payload == sent.payload
                        && ladder_headers(Some(&stored.headers)) == ladder_headers(sent.headers.as_ref())
                }
            };
        if same {
            tracing::debug!(%subject, message_id, sequence = ack.sequence, "publish was a duplicate of the same content");
            return Ok(());
        }
        tracing::error!(
            %subject,
            message_id,
            stream = %ack.stream,
            sequence = ack.sequence,
            stored_subject = %stored.subject,
            "jetstream holds different content under this message id: the publish is dropped as a duplicate"
        );
        Err(BusError::DuplicateConflict { subject: subject.to_string(), message_id: message_id.to_string() })
    }

    /// The payload of the last message on `subject` in `stream`, if there is one.
    pub async fn last_message(&self, stream: &str, subject: &str) -> Result<Option<Bytes>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let error =
            |e: &dyn std::fmt::Display| BusError::Topology { what: format!("stream {stream}"), message: e.to_string() };
        let stream = self.js.get_stream(stream).await.map_err(|e| error(&e))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message.payload)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(error(&e)),
        }
    }

    /// The durable pull consumer of a service, as declared in [`topology::CONSUMERS`].
    pub async fn consumer_named(&self, declared: &str, name: &str) -> Result<PullConsumer, BusError> {
        topology::consumer_named(&self.js, declared, name).await
    }

    /// The durable pull consumer of a service, as declared in [`topology::CONSUMERS`].
    pub async fn consumer(&self, durable: &str) -> Result<PullConsumer, BusError> {
        topology::consumer(&self.js, durable).await
    }

    /// Flushes what the client buffered; call before exiting.
    pub async fn drain(&self) {
        // Bounded: with NATS unreachable, a flush waits for a reconnection that may never come, and a service
        // told to stop must stop.
        match tokio::time::timeout(DRAIN_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing nats connection failed"),
            Err(_) => {
                tracing::warn!(timeout_s = DRAIN_TIMEOUT.as_secs(), "nats did not take the last messages in time")
            }
        }
    }
}

/// How long [`Bus::drain`] waits for NATS to take what is buffered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn parse_replicas(value: &str) -> Result<usize, BusError> {
    match value.trim().parse::<usize>() {
        Ok(replicas) if (1..=MAX_REPLICAS).contains(&replicas) => Ok(replicas),
        _ => Err(BusError::InvalidReplicas { value: value.to_string() }),
    }
}

/// Replicas for the cluster the server of `info` belongs to. A server outside a cluster sends no cluster
/// name; one in a cluster lists the client URLs of every node it is routed to, itself included.
fn replicas_for_cluster(info: &async_nats::ServerInfo) -> usize {
    if info.cluster.is_none() {
        return 1;
    }
    if info.connect_urls.is_empty() {
        // A cluster that does not advertise its nodes (no_advertise): their number is unknown.
        tracing::warn!(
            cluster = info.cluster.as_deref().unwrap_or(""),
            "nats cluster does not advertise its nodes, creating single-replica streams; set {REPLICAS_ENV}"
        );
        return 1;
    }
    info.connect_urls.len().min(AUTO_REPLICAS)
}

/// What a publish carries, to compare with what JetStream stored under the same message id.
enum Expected<'a> {
    Event(&'a Event),
    /// The same part, whenever it was stored.
    Part(&'a PartReady),
    /// Payload and `Ladder-*` headers, byte for byte.
    Raw,
}

/// The `Ladder-*` headers of a message, sorted, with all their values.
fn ladder_headers(headers: Option<&async_nats::HeaderMap>) -> Vec<(String, Vec<String>)> {
    let mut ladder: Vec<_> = headers
        .into_iter()
        .flat_map(|headers| headers.iter())
        .filter(|(name, _)| name.to_string().to_ascii_lowercase().starts_with("ladder-"))
        .map(|(name, values)| (name.to_string(), values.iter().map(|v| v.as_str().to_string()).collect()))
        .collect();
    ladder.sort();
    ladder
}

/// Connects to one of `servers`, waiting up to [`FIRST_CONNECTION_TIMEOUT`] for one to answer; a refused
/// login fails at once. Once connected, the client reconnects forever.
async fn first_connection(
    servers: &[async_nats::ServerAddr],
    credentials: &Credentials,
    refusals: &Refusals,
    url: &str,
) -> Result<async_nats::Client, BusError> {
    use async_nats::ConnectErrorKind;
    let deadline = tokio::time::Instant::now() + FIRST_CONNECTION_TIMEOUT;
    let mut logged = false;
    loop {
        let recorder = refusals.clone();
        let options = async_nats::ConnectOptions::new()
            .name("ladder")
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let recorder = recorder.clone();
                async move { recorder.record(&event) }
            });
        let options = credentials.apply(options).await?;
        match options.connect(servers.to_vec()).await {
            Ok(client) => return Ok(client),
            Err(e)
                if matches!(e.kind(), ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication) =>
            {
                return Err(BusError::Refused {
                    url: url.to_string(),
                    credentials: credentials.clone(),
                    reason: format!("{e}: wrong user, password, token or credentials file"),
                });
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(url, error = %e, "no nats server answers yet, waiting");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "no nats server answered");
                return Err(BusError::NoServer { url: url.to_string(), waited: FIRST_CONNECTION_TIMEOUT });
            }
        }
    }
}

/// Whether JetStream looked at the message and refused it (too large, a failed expectation, an API error),
/// as opposed to no answer, which a retry can fix: NATS unreachable, JetStream restarting (no responders),
/// a lost acknowledgement, or a cluster without a leader for the moment. Ingest, which retries its messages
/// for as long as it holds its claim, decides with this too.
pub fn is_refusal(error: &jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::context::PublishErrorKind;
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|api| api.error_code() != jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE),
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => false,
    }
}

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_from_jetstream_is_a_refusal() {
        use jetstream::context::{PublishError, PublishErrorKind};
        let api = |err_code: u64| {
            let json = format!(r#"{{"code":503,"err_code":{err_code},"description":"x"}}"#);
            serde_json::from_str::<jetstream::Error>(&json).expect("api error")
        };
        // Maximum messages per subject exceeded: the same message would be refused again.
        assert!(is_refusal(&PublishError::with_source(PublishErrorKind::Other, api(10077))));
        assert!(is_refusal(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)));
        // No answer, no responders (JetStream restarting), no leader for the moment: retried.
        assert!(!is_refusal(&PublishError::with_source(PublishErrorKind::Other, api(10008))));
        assert!(!is_refusal(&PublishError::new(PublishErrorKind::TimedOut)));
        assert!(!is_refusal(&PublishError::new(PublishErrorKind::StreamNotFound)));
        assert!(!is_refusal(&PublishError::new(PublishErrorKind::BrokenPipe)));
        assert!(!is_refusal(&PublishError::new(PublishErrorKind::Other)));
    }

    fn info(cluster: Option<&str>, nodes: usize) -> async_nats::ServerInfo {
        async_nats::ServerInfo {
            cluster: cluster.map(String::from),
            connect_urls: (0..nodes).map(|i| format!("127.0.0.1:{}", 4222 + i)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_follow_the_cluster_up_to_three() {
        assert_eq!(replicas_for_cluster(&info(None, 0)), 1);
        assert_eq!(replicas_for_cluster(&info(Some("c"), 0)), 1);
        assert_eq!(replicas_for_cluster(&info(Some("c"), 2)), 2);
        assert_eq!(replicas_for_cluster(&info(Some("c"), 3)), 3);
        assert_eq!(replicas_for_cluster(&info(Some("c"), 5)), 3);
    }

    #[test]
    fn configured_replicas_are_validated() {
        assert_eq!(parse_replicas("1").ok(), Some(1));
        assert_eq!(parse_replicas(" 5 ").ok(), Some(5));
        for bad in ["0", "6", "three", "", "-1"] {
            let error = parse_replicas(bad).expect_err("refused");
            assert!(error.to_string().contains(REPLICAS_ENV), "{error}");
        }
    }
}
