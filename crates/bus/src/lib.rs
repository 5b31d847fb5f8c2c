//! # Layout
//! Everything ladder knows about NATS JetStream, in one place:
//! - [`topology`]: the two JetStream streams and the durable consumers, declared once and created
//!   idempotently by [`Bus::connect`];
//! - [`Bus`]: a connection with typed publishing of [`Event`]s (deterministic `Nats-Msg-Id`, waits for the
//!   publish acknowledgement) and of raw TS;
//! - [`server`]: starts a real `nats-server -js` as a child process, for `ladder dev` and the tests.
#![forbid(unsafe_code)]

pub mod kv;
pub mod server;
pub mod topology;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use bytes::Bytes;
use ladder_proto::Event;

pub use async_nats;

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
/// How long [`Bus::connect`] waits for a first server to answer.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid {REPLICAS_ENV} {value:?}: expected a number of replicas from 1 to {MAX_REPLICAS}")]
    InvalidReplicas { value: String },
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("no NATS server answered at {url} within {waited:?}")]
    NoServer { url: String, waited: Duration },
    #[error("invalid NATS URL {url:?}: {source}")]
    InvalidUrl { url: String, source: std::io::Error },
    #[error("cannot set up JetStream {what}: {message}")]
    Topology { what: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
}

/// A connection to NATS with the ladder topology in place.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
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
    pub async fn connect_with(url: &str, replicas: Option<&str>) -> Result<Bus, BusError> {
        let configured = replicas.map(parse_replicas).transpose()?;
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BusError::InvalidUrl { url: url.to_string(), source })?;
        let client = async_nats::ConnectOptions::new()
            .name("ladder")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect { url: url.to_string(), source })?;
        // With retry_on_initial_connect the client connects in the background; a flush is answered once it
        // is connected, and then the server's INFO is known.
        match tokio::time::timeout(FIRST_CONNECTION_TIMEOUT, client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "waiting for the first nats connection failed"),
            Err(_) => return Err(BusError::NoServer { url: url.to_string(), waited: FIRST_CONNECTION_TIMEOUT }),
        }
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
        topology::ensure(&js, replicas).await?;
        Ok(Bus { client, js, replicas })
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// How many copies of a stream, consumer or key-value bucket ladder creates (see [`Bus::connect`]).
    /// Existing ones keep the replicas they have.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Publishes an event and waits until JetStream has stored it.
    pub async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        let subject = event.subject();
        let message = PublishMessage::build().payload(Bytes::from(event.encode())).message_id(event.message_id());
        self.publish(subject, message).await
    }

    /// Publishes raw TS bytes of one session; `id` must be unique and deterministic for the bytes.
    pub async fn publish_ts(&self, stream: &str, message: PublishMessage) -> Result<(), BusError> {
        self.publish(topology::ingest_subject(stream), message).await
    }

    async fn publish(&self, subject: String, message: PublishMessage) -> Result<(), BusError> {
        let error = |e: &dyn std::fmt::Display| BusError::Publish { subject: subject.clone(), message: e.to_string() };
        // Retried: with a deterministic Nats-Msg-Id a retry after a lost acknowledgement is de-duplicated.
        let mut attempt = 0;
        loop {
            let result = match self.js.send_publish(subject.clone(), message.clone()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| error(&e)),
                Err(e) => Err(error(&e)),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= 4 => return Err(e),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(%subject, attempt, error = %e, "publish failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
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
    pub async fn consumer(&self, durable: &str) -> Result<PullConsumer, BusError> {
        topology::consumer(&self.js, durable).await
    }

    /// Flushes what the client buffered; call before exiting.
    pub async fn drain(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "flushing nats connection failed");
        }
    }
}

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

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
