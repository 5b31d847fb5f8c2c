//! Ordered consumers that start where they were asked to, also after they are re-created.
//!
//! An ordered consumer is re-created by async-nats when it misses a heartbeat or a message (a NATS node
//! restarting, a stream leader moving, the consumer deleted): from the message after the last one it
//! delivered. Before it delivered any, async-nats 0.51 re-creates it with `DeliverPolicy::All`, forgetting the
//! start it was given (`recreate_consumer_stream`, `async-nats/src/jetstream/consumer/pull.rs`). A transcoder
//! that asked for one chunk's raw TS then got the stream's oldest retained message (CI saw it as a chunk
//! failed with "the raw TS of the chunk is gone" after a NATS node was killed), and a follower of the event log
//! would get 30 days of events.
//!
//! [`Follower`] knows its [`Start`]: until a message at or after it arrives, a message from before it means the
//! consumer forgot its start, and the follower creates it again from the start. From the first message in
//! range on, async-nats' own re-creation (from the last message delivered) is right.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{
        pull::{Ordered, OrderedConfig},
        DeliverPolicy,
    },
    Message,
};
use futures::StreamExt;
use time::OffsetDateTime;

/// How much older than a [`Start::Time`] a first message may be and still be taken: NATS compares the start
/// time with nanosecond timestamps of its own, and a message just before the start is harmless, unlike the
/// oldest message of a stream that keeps days.
const TIME_SLACK: Duration = Duration::from_secs(1);

/// Where a [`Follower`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained message.
    All,
    /// The first message stored after the follower is created (taken as the sequence after the stream's last).
    New,
    /// This stream sequence (or the first retained one after it).
    Sequence(u64),
    /// The first message stored at or after this time.
    Time(OffsetDateTime),
}

impl Start {
    fn deliver_policy(self) -> DeliverPolicy {
        match self {
            Start::All | Start::Sequence(0 | 1) => DeliverPolicy::All,
            Start::New => DeliverPolicy::New,
            Start::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            Start::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
        }
    }

    /// The message comes before the start.
    fn is_before(self, message: &Message) -> bool {
        let Ok(info) = message.info() else {
            return false;
        };
        match self {
            Start::All | Start::New => false,
            Start::Sequence(start) => info.stream_sequence < start,
            Start::Time(start) => info.published < start - TIME_SLACK,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("following {stream}: {message}")]
pub struct FollowError {
    pub stream: String,
    pub message: String,
}

impl FollowError {
    fn new(stream: &str, e: &dyn std::fmt::Display) -> FollowError {
        FollowError { stream: stream.to_string(), message: e.to_string() }
    }
}

/// An ordered consumer over `stream` from a [`Start`]; see the module doc.
pub struct Follower {
    stream: jetstream::stream::Stream,
    name: String,
    config: OrderedConfig,
    start: Start,
    messages: Ordered,
    /// A message at or after the start has been delivered.
    in_range: bool,
    restarts: u64,
}

impl Follower {
    /// Follows the JetStream stream `name` from `start`; `config` gives everything else (a subject filter, headers
    /// only), its deliver policy is `start`'s.
    pub async fn new(
        js: &jetstream::Context,
        name: &str,
        config: OrderedConfig,
        start: Start,
    ) -> Result<Follower, FollowError> {
        let stream = js.get_stream(name).await.map_err(|e| FollowError::new(name, &e))?;
        let start = match start {
            Start::New => Start::Sequence(stream.cached_info().state.last_sequence + 1),
            start => start,
        };
        let config = OrderedConfig { deliver_policy: start.deliver_policy(), ..config };
        let messages = subscribe(&stream, &config).await.map_err(|e| FollowError::new(name, &e))?;
        Ok(Follower { stream, name: name.to_string(), config, start, messages, in_range: false, restarts: 0 })
    }

    /// The next message; `None` when the consumer ends. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Message, FollowError>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(FollowError::new(&self.name, &e))),
            };
            if !self.in_range && self.start.is_before(&message) {
                let found = message.info().map(|info| info.stream_sequence).unwrap_or_default();
                tracing::info!(
                    stream = %self.name, start = ?self.start, found,
                    "the ordered consumer was re-created without its start, creating it again from the start"
                );
                self.restarts += 1;
                match subscribe(&self.stream, &self.config).await {
                    Ok(messages) => self.messages = messages,
                    Err(e) => return Some(Err(FollowError::new(&self.name, &e))),
                }
                continue;
            }
            self.in_range = true;
            return Some(Ok(message));
        }
    }

    /// How many times the consumer was created again because it had forgotten its start.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

async fn subscribe(stream: &jetstream::stream::Stream, config: &OrderedConfig) -> Result<Ordered, String> {
    let consumer = stream.create_consumer(config.clone()).await.map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}
