//! # Layout
//! The segmenter reads raw TS from `ingest.ts.<stream>` (durable consumer `segmenter`), cuts it into chunks
//! with [`ladder_media::Chunker`], stores each chunk under a deterministic key and announces it with
//! `chunk.uploaded.<stream>`.
//!
//! Delivery: a TS message is acknowledged only once every chunk holding its bytes is stored and announced,
//! so a crash makes JetStream redeliver what was not yet durable. State is per stream name, one publish
//! session at a time; a message from a new session closes the previous one.
#![forbid(unsafe_code)]

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::Message;
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{header, topology, Bus, BusError};
use ladder_media::{Chunk, Chunker, CLOCK};
use ladder_proto::{ChunkFailed, ChunkUploaded, Event, StreamEnded, StreamFailed, Timing};
use ladder_storage::{keys, Storage};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub storage: Storage,
    /// Chunks are cut at the first IDR at or after this duration.
    pub target_duration: Duration,
    /// A session that sends nothing for this long is closed as if it had ended.
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmenterError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("consuming {subject}: {message}")]
    Consume { subject: String, message: String },
}

/// One input message whose acknowledgement waits for its bytes to be in stored chunks.
struct Held {
    message: Message,
    end_offset: u64,
    received_ms: i64,
}

struct Session {
    id: String,
    chunker: Chunker,
    next_sequence: u64,
    held: Vec<Held>,
    /// Input offset where the next chunk's bytes begin.
    chunk_start: u64,
    failed: bool,
    last_activity: tokio::time::Instant,
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SegmenterError> {
    let bus = Bus::connect(&config.nats_url).await?;
    let consumer = bus.consumer(topology::SEGMENTER).await?;
    let consume = |e: &dyn std::fmt::Display| SegmenterError::Consume {
        subject: format!("{}.>", topology::INGEST_PREFIX),
        message: e.to_string(),
    };
    let mut messages = consumer.messages().await.map_err(|e| consume(&e))?;
    let mut segmenter = Segmenter { bus: bus.clone(), config, sessions: HashMap::new() };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tracing::info!(target_s = segmenter.config.target_duration.as_secs_f64(), "segmenter started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => segmenter.close_idle().await,
            message = messages.next() => match message {
                Some(Ok(message)) => segmenter.handle(message).await,
                Some(Err(e)) => tracing::warn!(error = %e, "receiving from ingest stream failed"),
                None => return Err(consume(&"consumer stream ended")),
            },
        }
    }
    // In-flight chunks are not acknowledged: JetStream redelivers them to the next segmenter.
    bus.drain().await;
    tracing::info!("segmenter stopped");
    Ok(())
}

struct Segmenter {
    bus: Bus,
    config: Config,
    sessions: HashMap<String, Session>,
}

fn header_value<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

impl Segmenter {
    async fn handle(&mut self, message: Message) {
        let subject = message.subject.to_string();
        let Some(stream) = subject.strip_prefix(topology::INGEST_PREFIX).and_then(|s| s.strip_prefix('.')) else {
            ack(&message).await;
            return;
        };
        let stream = stream.to_string();
        let Some(session_id) = header_value(&message, header::SESSION).map(str::to_string) else {
            tracing::warn!(%stream, "ts message without a session header, dropped");
            ack(&message).await;
            return;
        };
        let received_ms =
            header_value(&message, header::RECEIVED_MS).and_then(|v| v.parse().ok()).unwrap_or_else(ladder_bus::now_ms);
        let end_reason = header_value(&message, header::END)
            .map(|_| header_value(&message, header::END_REASON).unwrap_or("disconnected").to_string());

        if self.sessions.get(&stream).is_some_and(|s| s.id != session_id) {
            // A new publish session under the same name: the old one will send nothing more.
            self.close(&stream, "replaced by a new session").await;
        }
        let target = (self.config.target_duration.as_secs_f64() * CLOCK as f64) as u64;
        let session = self.sessions.entry(stream.clone()).or_insert_with(|| {
            tracing::info!(%stream, session = %session_id, "segmenting new session");
            Session {
                id: session_id.clone(),
                chunker: Chunker::new(target),
                next_sequence: 0,
                held: Vec::new(),
                chunk_start: 0,
                failed: false,
                last_activity: tokio::time::Instant::now(),
            }
        });
        session.last_activity = tokio::time::Instant::now();
        if session.failed {
            // The session was refused: its data is dropped, but its end is still announced.
            ack(&message).await;
        } else {
            let result = session.chunker.push(&message.payload);
            let end_offset = session.chunker.input_offset();
            session.held.push(Held { message, end_offset, received_ms });
            match result {
                Ok(chunks) => {
                    for chunk in chunks {
                        self.publish_chunk(&stream, chunk).await;
                    }
                }
                Err(error) => self.fail_session(&stream, "segmenter", error.to_string()).await,
            }
        }
        if let Some(reason) = end_reason {
            self.close(&stream, &reason).await;
        }
    }

    /// Flushes the last chunk of a session, announces its end with the final chunk count, and forgets it.
    async fn close(&mut self, stream: &str, reason: &str) {
        let Some(session) = self.sessions.get_mut(stream) else {
            return;
        };
        if let Some(chunk) = session.chunker.finish() {
            self.publish_chunk(stream, chunk).await;
        }
        // A session that ends in error, or without one chunk, failed: say why, once.
        let failure =
            self.sessions.get(stream).filter(|s| !s.failed && s.next_sequence == 0).and_then(|s| {
                match reason.strip_prefix("error: ") {
                    Some(error) => Some(("ingest", error.to_string())),
                    None => s.chunker.diagnose().map(|e| ("segmenter", e.to_string())),
                }
            });
        if let Some((stage, why)) = failure {
            self.fail_session(stream, stage, why).await;
        }
        let Some(session) = self.sessions.remove(stream) else {
            return;
        };
        tracing::info!(%stream, session = %session.id, chunks = session.next_sequence, reason, "session closed");
        let ended = Event::StreamEnded(StreamEnded {
            stream: stream.to_string(),
            session_id: session.id.clone(),
            ended_at_ms: ladder_bus::now_ms(),
            bytes_received: session.chunker.input_offset(),
            reason: reason.to_string(),
            chunk_count: session.next_sequence,
        });
        if let Err(e) = self.bus.publish_event(&ended).await {
            // Left unacknowledged, the closing message comes back and the end is announced then.
            tracing::error!(%stream, error = %e, "cannot announce the end of the session");
            return;
        }
        for held in session.held {
            ack(&held.message).await;
        }
    }

    async fn close_idle(&mut self) {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.last_activity.elapsed() > self.config.idle_timeout)
            .map(|(stream, _)| stream.clone())
            .collect();
        for stream in idle {
            tracing::warn!(%stream, "no data and no end of session, closing it");
            self.close(&stream, "idle timeout").await;
        }
    }

    async fn fail_session(&mut self, stream: &str, stage: &str, reason: String) {
        let Some(session) = self.sessions.get_mut(stream) else {
            return;
        };
        tracing::error!(%stream, session = %session.id, %reason, "stream refused");
        session.failed = true;
        let event = Event::StreamFailed(StreamFailed {
            stream: stream.to_string(),
            session_id: session.id.clone(),
            stage: stage.into(),
            reason,
            failed_at_ms: ladder_bus::now_ms(),
        });
        for held in std::mem::take(&mut session.held) {
            ack(&held.message).await;
        }
        if let Err(e) = self.bus.publish_event(&event).await {
            tracing::error!(%stream, error = %e, "cannot publish stream failure");
        }
    }

    async fn publish_chunk(&mut self, stream: &str, chunk: Chunk) {
        let Some(session) = self.sessions.get_mut(stream) else {
            return;
        };
        let segmented_ms = ladder_bus::now_ms();
        let sequence = session.next_sequence;
        session.next_sequence += 1;
        let received_at = |offset: u64| {
            session.held.iter().find(|h| h.end_offset > offset).or(session.held.last()).map(|h| h.received_ms)
        };
        let wall_clock_ms = received_at(session.chunk_start).unwrap_or(segmented_ms);
        let last_packet_ms = received_at(chunk.input_end.saturating_sub(1)).unwrap_or(segmented_ms);
        session.chunk_start = chunk.input_end;
        let key = keys::source_chunk(stream, &session.id, sequence);
        let size = chunk.data.len() as u64;
        let session_id = session.id.clone();
        if let Err(error) = self.config.storage.put(&key, Bytes::from(chunk.data)).await {
            // Without its source the chunk cannot be transcoded: it becomes a gap that the manifest skips.
            tracing::error!(%stream, sequence, %error, "storing chunk failed");
            let failed = Event::ChunkFailed(ChunkFailed {
                stream: stream.to_string(),
                session_id,
                sequence,
                has_sequence: true,
                stage: "segmenter".into(),
                reason: error.to_string(),
                permanent: true,
            });
            if let Err(e) = self.bus.publish_event(&failed).await {
                tracing::error!(%stream, error = %e, "cannot publish chunk failure");
            }
            return;
        }
        let event = Event::ChunkUploaded(ChunkUploaded {
            stream: stream.to_string(),
            session_id,
            sequence,
            object_key: key,
            size_bytes: size,
            first_pts: chunk.first_pts,
            duration: chunk.duration,
            wall_clock_ms,
            discontinuity: chunk.discontinuity,
            width: chunk.width,
            height: chunk.height,
            codecs: chunk.codecs,
            frame_duration: chunk.frame_duration,
            timing: Some(Timing {
                ingest_last_packet_ms: last_packet_ms,
                segmented_ms,
                uploaded_ms: ladder_bus::now_ms(),
                ..Default::default()
            }),
        });
        if let Err(e) = self.bus.publish_event(&event).await {
            // After the bus's own retries NATS is unreachable: the chunk is stored but unannounced, and the
            // playlists stop before it (they never list past a missing sequence number).
            tracing::error!(%stream, sequence, error = %e, "announcing chunk failed");
            return;
        }
        tracing::debug!(%stream, sequence, duration_s = chunk.duration as f64 / CLOCK as f64, size, "chunk uploaded");
        let Some(session) = self.sessions.get_mut(stream) else {
            return;
        };
        let (done, keep): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut session.held).into_iter().partition(|h| h.end_offset <= chunk.input_end);
        session.held = keep;
        for held in done {
            ack(&held.message).await;
        }
    }
}

async fn ack(message: &Message) {
    if let Err(e) = message.ack().await {
        tracing::warn!(subject = %message.subject, error = %e, "ack failed");
    }
}
