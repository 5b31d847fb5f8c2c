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
//!
//! An ordered consumer can also stall: after a NATS node is lost, a consumer on a surviving node may go on
//! answering pull requests (with timeouts) and delivering nothing while the stream stores new messages
//! (`crates/bus/tests/follow_cluster.rs` shows it with nats-server 2.9), and async-nats sees nothing wrong with
//! it. A transcoder whose chunk reader stalled held its chunk for minutes (CI saw a chunk missing from every
//! rendition after nats2 was killed). So a follower that has delivered nothing for [`STALL_CHECK`] asks the
//! stream for the last message it would deliver; if that one is past what it delivered, the consumer is
//! created again from the message after the last one delivered (or from the start, before the first).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{
        pull::{Ordered, OrderedConfig},
        DeliverPolicy,
    },
    stream::LastRawMessageErrorKind,
    Message,
};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;

/// How long a follower may deliver nothing before it asks the stream whether a message is waiting for it.
pub const STALL_CHECK: Duration = Duration::from_secs(3);

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

    /// The stream's last message that the follower would deliver, stored at `sequence` and `time`, is at or
    /// after this start.
    fn reaches(self, sequence: u64, time: OffsetDateTime) -> bool {
        match self {
            Start::All | Start::New => true,
            Start::Sequence(start) => sequence >= start,
            Start::Time(start) => time >= start,
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
    /// The stream sequence of the last message delivered.
    delivered: Option<u64>,
    /// When the last message was delivered, or the stream was last asked whether one is waiting.
    quiet_since: Instant,
    restarts: u64,
    stalls: u64,
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
        Ok(Follower {
            stream,
            name: name.to_string(),
            config,
            start,
            messages,
            in_range: false,
            delivered: None,
            quiet_since: Instant::now(),
            restarts: 0,
            stalls: 0,
        })
    }

    /// The next message; `None` when the consumer ends. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Message, FollowError>> {
        loop {
            // The deadline is the follower's, not this call's: a caller that polls with a shorter timeout still
            // gets the check.
            let waited = tokio::select! {
                // A message already there is delivered, not taken for a stall.
                biased;
                message = self.messages.next() => Some(message),
                // Nothing for STALL_CHECK.
                _ = tokio::time::sleep_until(self.quiet_since + STALL_CHECK) => None,
            };
            let message = match waited {
                None => {
                    self.unless_stalled().await;
                    self.quiet_since = Instant::now();
                    continue;
                }
                Some(message) => match message? {
                    Ok(message) => message,
                    Err(e) => return Some(Err(FollowError::new(&self.name, &e))),
                },
            };
            self.quiet_since = Instant::now();
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
            self.delivered = message.info().ok().map(|info| info.stream_sequence);
            return Some(Ok(message));
        }
    }

    /// Where the follower goes on from: the message after the last one delivered, or its start.
    fn position(&self) -> Start {
        match self.delivered {
            Some(sequence) if self.in_range => Start::Sequence(sequence + 1),
            _ => self.start,
        }
    }

    /// Creates the consumer again from [`Follower::position`] if the stream holds a message there that it
    /// has not delivered. A stream that cannot be asked now (NATS reconnecting), or a consumer that cannot be
    /// created now, is tried again at the next check.
    async fn unless_stalled(&mut self) {
        let last = match self.last_stored().await {
            Ok(last) => last,
            Err(e) => {
                tracing::debug!(stream = %self.name, error = %e, "cannot ask the stream whether the follower is behind");
                return;
            }
        };
        let position = self.position();
        let Some((sequence, _)) = last.filter(|(sequence, time)| position.reaches(*sequence, *time)) else {
            return;
        };
        tracing::warn!(
            stream = %self.name, filter = %self.config.filter_subject, delivered = ?self.delivered, last_stored = sequence,
            "the ordered consumer stalled (nothing delivered for {STALL_CHECK:?} with messages waiting), creating it again"
        );
        self.stalls += 1;
        let config = OrderedConfig { deliver_policy: position.deliver_policy(), ..self.config.clone() };
        match tokio::time::timeout(STALL_CHECK, subscribe(&self.stream, &config))
            .await
            .unwrap_or(Err("timed out".into()))
        {
            Ok(messages) => self.messages = messages,
            // With a node down, nats-server 2.9 may place the new consumer on it, and the request is never
            // answered: the old consumer stays, and the next check tries again (bounded, so that it comes soon).
            Err(e) => {
                tracing::warn!(stream = %self.name, error = %e, "creating the ordered consumer again failed, retrying")
            }
        }
    }

    /// The stream sequence and time of the last stored message the follower would deliver: the last one on
    /// its subject, or (with no filter, or a wildcard one) the stream's last message.
    async fn last_stored(&mut self) -> Result<Option<(u64, OffsetDateTime)>, String> {
        tokio::time::timeout(STALL_CHECK, self.ask_last_stored()).await.unwrap_or(Err("timed out".into()))
    }

    async fn ask_last_stored(&mut self) -> Result<Option<(u64, OffsetDateTime)>, String> {
        let filter = self.config.filter_subject.clone();
        if filter.is_empty() || filter.split('.').any(|token| token == "*" || token == ">") {
            let info = self.stream.info().await.map_err(|e| e.to_string())?;
            let state = &info.state;
            return Ok((state.messages > 0).then_some((state.last_sequence, state.last_timestamp)));
        }
        match self.stream.get_last_raw_message_by_subject(&filter).await {
            Ok(message) => Ok(Some((message.sequence, message.time))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// How many times the consumer was created again because it had forgotten its start.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// How many times the consumer was created again because it had stalled.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}

async fn subscribe(stream: &jetstream::stream::Stream, config: &OrderedConfig) -> Result<Ordered, String> {
    let consumer = stream.create_consumer(config.clone()).await.map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}
