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

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
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
}

impl Bus {
    /// Connects and creates the streams and consumers if they do not exist yet. `url` may list several
    /// servers of a cluster, comma-separated; the client also learns the others from the cluster.
    pub async fn connect(url: &str) -> Result<Bus, BusError> {
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BusError::InvalidUrl { url: url.to_string(), source })?;
        let client = async_nats::ConnectOptions::new()
            .name("ladder")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect { url: url.to_string(), source })?;
        let js = jetstream::new(client.clone());
        topology::ensure(&js).await?;
        Ok(Bus { client, js })
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
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

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
