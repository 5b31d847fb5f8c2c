//! One stream name owned by this instance: the lease that makes it ours, the ordered consumer that reads its
//! raw TS from the checkpoint on, and the cutting, storing and announcing of its chunks.
//!
//! Order of effects for every chunk: `chunk.started` as soon as its first IDR is in (before the chunk it ends
//! is stored, so a transcoder starts on it with its first bytes, read from the raw TS), then, once it is
//! complete, store the source object (write-once), publish `chunk.uploaded` (deterministic `Nats-Msg-Id`),
//! then write the checkpoint (compare-and-swap). An owner that dies between any
//! two of them leaves the next owner to redo the chunk from the previous checkpoint: the chunker cuts it again
//! byte for byte (`Chunker::resume`), the store answers `Unchanged`, and JetStream drops the announcement as a
//! duplicate of identical content. Nothing is lost, cut twice or numbered twice.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{
    consumer::pull::OrderedConfig,
    kv::{self, UpdateErrorKind},
    Message,
};
use bytes::Bytes;
use ladder_bus::{
    follow::{Follower, Start},
    header,
    kv::LEASE_RENEW,
    kv::LEASE_TTL,
    topology, Bus, BusError,
};
use ladder_media::{Chunk, Chunker, Started, CLOCK};
use ladder_proto::{ChunkFailed, ChunkStarted, ChunkUploaded, Event, RawTsPosition, StreamEnded, StreamFailed, Timing};
use ladder_storage::{keys, ErrorKind, Storage};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{checkpoint::Checkpoint, metrics};

/// An owner with no open session and no message for this long gives the stream back.
const RELEASE_WHEN_IDLE: Duration = Duration::from_secs(5);
/// An open session with no message for this long gets a new consumer: a consumer lost with a NATS restart or
/// a failed node does not always say so.
const RESUBSCRIBE_WHEN_SILENT: Duration = Duration::from_secs(4);
/// Rounds of storage retries (each already retried by the store) before a chunk is given up as failed.
const PUT_ROUNDS: u32 = 3;

/// What every owner of this instance shares.
pub struct Shared {
    pub bus: Bus,
    pub storage: Storage,
    pub leases: kv::Store,
    pub checkpoints: kv::Store,
    pub instance: String,
    /// Target chunk duration in 90 kHz ticks.
    pub target: u64,
    pub idle_timeout: Duration,
}

/// How an owner ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing left to cut: every message up to this stream sequence is done, and the lease is given back.
    Released { through: u64 },
    /// Shutdown, or the lease went to another instance: the next owner resumes from the checkpoint.
    Stopped,
    /// Something failed (NATS unreachable for long, a checkpoint that cannot be read): retried later.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
enum OwnerError {
    #[error("lost the lease or the checkpoint to another instance")]
    Lost,
    #[error("{0}")]
    Bus(#[from] BusError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Owns `stream` from a lease created at `revision` until `stop` is cancelled, the lease is lost, or there is
/// nothing left to cut.
pub async fn own(shared: Arc<Shared>, stream: String, revision: u64, stop: CancellationToken) -> Outcome {
    let lost = stop.child_token();
    let (revision_tx, revision_rx) = watch::channel(revision);
    let renewer = tokio::spawn(renew(shared.clone(), stream.clone(), revision_tx, lost.clone()));
    tracing::info!(%stream, instance = %shared.instance, "stream owned");
    let _owned = metrics::Owned::new(&stream);
    let outcome = match Owner::load(shared.clone(), stream.clone()).await {
        Ok(mut owner) => owner.run(&lost).await,
        Err(e) => Err(e),
    };
    renewer.abort();
    let outcome = match outcome {
        Ok(through) => Outcome::Released { through },
        // Told to stop (SIGTERM): `lost` is a child of `stop`, so the owner saw it cancelled too. The lease is
        // still ours and is given back below.
        Err(OwnerError::Lost) if stop.is_cancelled() => Outcome::Stopped,
        Err(OwnerError::Lost) => {
            tracing::warn!(%stream, instance = %shared.instance, "stream taken over by another instance");
            return Outcome::Stopped;
        }
        Err(_) if lost.is_cancelled() => Outcome::Stopped,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    // Given back at once rather than left to expire, so another instance can take over without waiting.
    let revision = *revision_rx.borrow();
    if let Err(e) = shared.leases.delete_expect_revision(&stream, Some(revision)).await {
        tracing::debug!(%stream, error = %e, "lease not released (expired or taken)");
    }
    tracing::info!(%stream, instance = %shared.instance, outcome = ?outcome, "stream released");
    outcome
}

/// Keeps the lease alive; cancels `lost` when it is gone or cannot be renewed in time.
async fn renew(shared: Arc<Shared>, stream: String, revision: watch::Sender<u64>, lost: CancellationToken) {
    let value = Bytes::from(shared.instance.clone());
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(LEASE_RENEW) => {}
        }
        let current = *revision.borrow();
        match shared.leases.update(&stream, value.clone(), current).await {
            Ok(next) => {
                revision.send_replace(next);
                last_renewed = tokio::time::Instant::now();
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(%stream, "lease expired or taken by another instance, stopping");
                lost.cancel();
                return;
            }
            Err(e) => {
                // NATS unreachable: keep going while the lease may still be ours, stop before it can expire.
                tracing::warn!(%stream, error = %e, "renewing the lease failed");
                if last_renewed.elapsed() + LEASE_RENEW >= LEASE_TTL {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// One input message whose bytes the chunk in progress may hold.
struct Fed {
    stream_seq: u64,
    ladder_seq: u64,
    /// Input offsets of the message's first byte and one past its last.
    start: u64,
    end: u64,
    received_ms: i64,
    /// The trace context ingest sent the message with (its `ingest.gop` span).
    traceparent: Option<String>,
}

/// The publish session being cut.
struct Open {
    id: String,
    chunker: Chunker,
    next_sequence: u64,
    failed: bool,
    /// `Ladder-Seq` of the next message to feed.
    expected: u64,
    /// At a resume: the message the chunk in progress starts in, and how many of its bytes to skip.
    resume_at: Option<(u64, u64)>,
    fed: VecDeque<Fed>,
    /// Input offset where the next chunk's bytes begin.
    chunk_start: u64,
    last_activity: tokio::time::Instant,
    last_received_ms: i64,
    /// The span of each chunk announced and not yet stored, by sequence: from its start to its upload.
    spans: BTreeMap<u64, tracing::Span>,
}

struct Owner {
    shared: Arc<Shared>,
    stream: String,
    checkpoint: Checkpoint,
    /// Revision of the checkpoint entry; `None` if there is none yet.
    revision: Option<u64>,
    open: Option<Open>,
    /// Stream sequence of the last message handled.
    last_seq: u64,
}

fn header_value<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

impl Owner {
    async fn load(shared: Arc<Shared>, stream: String) -> Result<Owner, OwnerError> {
        let entry = shared
            .checkpoints
            .entry(stream.clone())
            .await
            .map_err(|e| OwnerError::Checkpoint(format!("reading: {e}")))?
            .filter(|entry| entry.operation == kv::Operation::Put);
        let (checkpoint, revision) = match entry {
            Some(entry) => {
                let checkpoint = Checkpoint::decode(&entry.value)
                    .map_err(|e| OwnerError::Checkpoint(format!("undecodable checkpoint of {stream}: {e}")))?;
                (checkpoint, Some(entry.revision))
            }
            None => (Checkpoint::default(), None),
        };
        let open = (!checkpoint.session.is_empty() && !checkpoint.closed).then(|| {
            let resume = checkpoint.resume.clone();
            let chunk_start = resume.as_ref().map_or(0, |r| r.input_offset);
            let chunker = match resume {
                Some(resume) => Chunker::resume(shared.target, resume),
                None => Chunker::new(shared.target),
            };
            Open {
                id: checkpoint.session.clone(),
                chunker,
                next_sequence: checkpoint.next_sequence,
                failed: checkpoint.failed,
                expected: checkpoint.ladder_seq,
                resume_at: Some((checkpoint.ladder_seq, checkpoint.skip)),
                fed: VecDeque::new(),
                chunk_start,
                last_activity: tokio::time::Instant::now(),
                last_received_ms: 0,
                spans: BTreeMap::new(),
            }
        });
        if let Some(open) = &open {
            tracing::info!(
                stream = %stream, session = %open.id, next_sequence = open.next_sequence,
                stream_seq = checkpoint.stream_seq, skip = checkpoint.skip, "resuming an open session from its checkpoint"
            );
        }
        let last_seq = checkpoint.stream_seq.saturating_sub(1);
        Ok(Owner { shared, stream, checkpoint, revision, open, last_seq })
    }

    /// Reads and cuts until there is nothing left (`Ok` with the last stream sequence handled) or `lost`.
    async fn run(&mut self, lost: &CancellationToken) -> Result<u64, OwnerError> {
        let mut messages = self.subscribe().await?;
        let mut idle_since = tokio::time::Instant::now();
        let mut subscribed_at = tokio::time::Instant::now();
        loop {
            let next = tokio::select! {
                _ = lost.cancelled() => return Err(OwnerError::Lost),
                next = tokio::time::timeout(Duration::from_secs(1), messages.next()) => next,
            };
            match next {
                Ok(Some(Ok(message))) => {
                    idle_since = tokio::time::Instant::now();
                    // Dropping the work half-way (shutdown, lost lease) is safe: the next owner redoes it.
                    tokio::select! {
                        _ = lost.cancelled() => return Err(OwnerError::Lost),
                        result = self.handle(message) => result?,
                    }
                }
                Ok(Some(Err(e))) => {
                    // The consumer may be gone with the server that held it: start a new one where we are.
                    tracing::warn!(stream = %self.stream, error = %e, "reading raw ts failed, subscribing again");
                    messages = self.resubscribe(lost).await?;
                    subscribed_at = tokio::time::Instant::now();
                }
                Ok(None) => {
                    tracing::warn!(stream = %self.stream, "raw ts consumer ended, subscribing again");
                    messages = self.resubscribe(lost).await?;
                    subscribed_at = tokio::time::Instant::now();
                }
                Err(_) => {
                    let silent = idle_since.elapsed().min(subscribed_at.elapsed());
                    if self.open.is_some() && silent > RESUBSCRIBE_WHEN_SILENT {
                        tracing::debug!(stream = %self.stream, "open session silent, subscribing again");
                        messages = self.resubscribe(lost).await?;
                        subscribed_at = tokio::time::Instant::now();
                    }
                    let idle_open =
                        self.open.as_ref().is_some_and(|o| o.last_activity.elapsed() > self.shared.idle_timeout);
                    if idle_open {
                        tracing::warn!(stream = %self.stream, "no data and no end of session, closing it");
                        let after = self.last_seq + 1;
                        tokio::select! {
                            _ = lost.cancelled() => return Err(OwnerError::Lost),
                            result = self.close("idle timeout", after, None) => result?,
                        }
                    } else if self.open.is_none() && idle_since.elapsed() > RELEASE_WHEN_IDLE {
                        return Ok(self.last_seq);
                    }
                }
            }
        }
    }

    /// A new consumer from the message after the last one handled, retried until NATS answers or `lost`.
    async fn resubscribe(&self, lost: &CancellationToken) -> Result<Follower, OwnerError> {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.subscribe().await {
                Ok(messages) => return Ok(messages),
                Err(e) => tracing::warn!(stream = %self.stream, error = %e, "subscribing to raw ts failed, retrying"),
            }
            tokio::select! {
                _ = lost.cancelled() => return Err(OwnerError::Lost),
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn subscribe(&self) -> Result<Follower, OwnerError> {
        Follower::new(
            self.shared.bus.jetstream(),
            topology::INGEST_STREAM,
            OrderedConfig { filter_subject: topology::ingest_subject(&self.stream), ..Default::default() },
            Start::Sequence(self.last_seq + 1),
        )
        .await
        .map_err(|e| {
            OwnerError::Bus(BusError::Topology { what: format!("raw ts of {}", self.stream), message: e.to_string() })
        })
    }

    async fn handle(&mut self, message: Message) -> Result<(), OwnerError> {
        let Some(stream_seq) = message.info().ok().map(|info| info.stream_sequence) else {
            return Ok(());
        };
        if stream_seq <= self.last_seq {
            return Ok(()); // delivered again after the consumer was re-created
        }
        self.last_seq = stream_seq;
        let Some(session) = header_value(&message, header::SESSION).map(str::to_string) else {
            tracing::warn!(stream = %self.stream, "ts message without a session header, dropped");
            return Ok(());
        };
        let ladder_seq = header_value(&message, header::SEQUENCE).and_then(|v| v.parse::<u64>().ok());
        let received_ms =
            header_value(&message, header::RECEIVED_MS).and_then(|v| v.parse().ok()).unwrap_or_else(ladder_bus::now_ms);
        let end_reason = header_value(&message, header::END)
            .map(|_| header_value(&message, header::END_REASON).unwrap_or("disconnected").to_string());

        match &self.open {
            Some(open) if session < open.id => {
                tracing::warn!(stream = %self.stream, %session, open = %open.id, "message of an older session, dropped");
                return Ok(());
            }
            Some(open) if session > open.id => {
                // A new publish session under the same name: the old one will send nothing more.
                self.close("replaced by a new session", stream_seq, None).await?;
            }
            Some(_) => {}
            None if self.checkpoint.is_stale(&session) => {
                tracing::debug!(stream = %self.stream, %session, "message of a closed session, dropped");
                return Ok(());
            }
            None => {}
        }
        if self.open.is_none() {
            tracing::info!(stream = %self.stream, %session, "segmenting new session");
            self.open = Some(Open {
                id: session.clone(),
                chunker: Chunker::new(self.shared.target),
                next_sequence: 0,
                failed: false,
                expected: ladder_seq.unwrap_or(0),
                resume_at: None,
                fed: VecDeque::new(),
                chunk_start: 0,
                last_activity: tokio::time::Instant::now(),
                last_received_ms: received_ms,
                spans: BTreeMap::new(),
            });
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.last_activity = tokio::time::Instant::now();
        open.last_received_ms = received_ms;

        // Bytes JetStream delivers twice, or that ingest published twice, are recognised by their Ladder-Seq.
        let mut payload = &message.payload[..];
        let mut skipped = 0;
        if let Some(seq) = ladder_seq {
            if seq < open.expected {
                tracing::debug!(stream = %self.stream, seq, expected = open.expected, "ts message seen before, skipped");
                return Ok(());
            }
            if seq > open.expected && open.resume_at.is_none() {
                tracing::warn!(stream = %self.stream, seq, expected = open.expected, "ts messages missing");
            }
            if let Some((at, skip)) = open.resume_at.take() {
                if seq == at {
                    payload = payload.get(skip as usize..).unwrap_or_default();
                    skipped = skip;
                } else {
                    tracing::warn!(stream = %self.stream, seq, expected = at, "the checkpoint's message is gone");
                }
            }
            open.expected = seq + 1;
        }

        if !open.failed && !payload.is_empty() {
            // Offsets of the whole message, skipped bytes included, so a later checkpoint can point into it.
            let start = open.chunker.input_offset().saturating_sub(skipped);
            // A chunk being built when this message came in is the next one to be numbered.
            let building = !open.chunker.growing().is_empty();
            let result = open.chunker.push(payload);
            open.fed.push_back(Fed {
                stream_seq,
                ladder_seq: ladder_seq.unwrap_or(0),
                start,
                end: open.chunker.input_offset(),
                received_ms,
                traceparent: ladder_telemetry::trace::traceparent(message.headers.as_ref()),
            });
            let started = open.chunker.take_started();
            let first_started = open.next_sequence + u64::from(building);
            match result {
                Ok(chunks) => {
                    // Announced before the chunk that ended with it is stored: transcoding starts at once.
                    for (sequence, start) in (first_started..).zip(started) {
                        self.announce_start(sequence, start).await?;
                    }
                    for chunk in chunks {
                        self.publish_chunk(chunk).await?;
                    }
                }
                Err(error) => self.fail_session("segmenter", error.to_string(), stream_seq + 1).await?,
            }
        }
        if let Some(reason) = end_reason {
            self.close(&reason, stream_seq + 1, Some(received_ms)).await?;
        }
        Ok(())
    }

    /// Flushes the last chunk of the open session, announces its end with the final chunk count, and records
    /// it closed: reading resumes at `after`.
    async fn close(&mut self, reason: &str, after: u64, ended_at_ms: Option<i64>) -> Result<(), OwnerError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if !open.failed {
            if let Some(chunk) = open.chunker.finish() {
                self.publish_chunk(chunk).await?;
            }
        }
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        // A session that ends in error, or without one chunk, failed: say why, once.
        let failure = (!open.failed && open.next_sequence == 0)
            .then(|| match reason.strip_prefix("error: ") {
                Some(error) => Some(("ingest", error.to_string())),
                None => open.chunker.diagnose().map(|e| ("segmenter", e.to_string())),
            })
            .flatten();
        if let Some((stage, why)) = failure {
            self.announce_failure(stage, why).await?;
        }
        let ended = Event::StreamEnded(StreamEnded {
            stream: self.stream.clone(),
            session_id: open.id.clone(),
            ended_at_ms: ended_at_ms.unwrap_or(open.last_received_ms),
            bytes_received: open.chunker.input_offset(),
            reason: reason.to_string(),
            chunk_count: open.next_sequence,
        });
        self.publish(&ended).await?;
        tracing::info!(stream = %self.stream, session = %open.id, chunks = open.next_sequence, reason, "session closed");
        metrics::METRICS.sessions.inc();
        let checkpoint = Checkpoint {
            session: open.id.clone(),
            closed: true,
            failed: open.failed,
            next_sequence: open.next_sequence,
            stream_seq: after,
            ..Default::default()
        };
        self.save(checkpoint).await?;
        self.open = None;
        Ok(())
    }

    async fn fail_session(&mut self, stage: &str, reason: String, after: u64) -> Result<(), OwnerError> {
        self.announce_failure(stage, reason).await?;
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.failed = true;
        open.fed.clear();
        let checkpoint = Checkpoint {
            session: open.id.clone(),
            failed: true,
            next_sequence: open.next_sequence,
            stream_seq: after,
            ladder_seq: open.expected,
            ..Default::default()
        };
        self.save(checkpoint).await
    }

    async fn announce_failure(&self, stage: &str, reason: String) -> Result<(), OwnerError> {
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        tracing::error!(stream = %self.stream, session = %open.id, %reason, "stream refused");
        let event = Event::StreamFailed(StreamFailed {
            stream: self.stream.clone(),
            session_id: open.id.clone(),
            stage: stage.into(),
            reason,
            failed_at_ms: open.last_received_ms,
        });
        self.publish(&event).await?;
        Ok(())
    }

    /// Announces that chunk `sequence` has begun, with where its bytes are in the raw TS: a transcoder reads them
    /// from there as they arrive. Derived from the input alone (the arrival times and positions of the messages,
    /// the chunker's state), so an owner that redoes the chunk after a takeover announces the same event.
    async fn announce_start(&mut self, sequence: u64, start: Started) -> Result<(), OwnerError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let offset = start.resume.input_offset;
        let Some(at) = open.fed.iter().find(|f| f.start <= offset && offset < f.end) else {
            return Err(OwnerError::Checkpoint(format!("chunk {sequence} starts in no message seen")));
        };
        let chunker_state = serde_json::to_vec(&start.resume)
            .map_err(|e| OwnerError::Checkpoint(format!("encoding the chunker state: {e}")))?;
        let event = Event::ChunkStarted(ChunkStarted {
            stream: self.stream.clone(),
            session_id: open.id.clone(),
            sequence,
            first_pts: start.first_pts,
            wall_clock_ms: at.received_ms,
            discontinuity: start.discontinuity,
            width: start.width,
            height: start.height,
            frame_duration: start.frame_duration,
            source: Some(RawTsPosition {
                stream_sequence: at.stream_seq,
                ladder_sequence: at.ladder_seq,
                skip: offset - at.start,
                chunker_state,
            }),
            target_duration: self.shared.target,
        });
        // One chunk, one trace: this span is a child of ingest's span for the message the chunk starts in.
        let span =
            tracing::info_span!(parent: None, "segmenter.chunk", stream = %self.stream, session = %open.id, sequence);
        ladder_telemetry::trace::set_parent_to(&span, at.traceparent.as_deref());
        open.spans.insert(sequence, span.clone());
        // Chunks that never end (a session cut short) are not kept for ever.
        while open.spans.len() > 8 {
            open.spans.pop_first();
        }
        self.publish(&event).instrument(span).await
    }

    /// Stores, announces and checkpoints one chunk of the open session.
    async fn publish_chunk(&mut self, chunk: Chunk) -> Result<(), OwnerError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let segmented_ms = ladder_bus::now_ms();
        let sequence = open.next_sequence;
        let received_at =
            |offset: u64| open.fed.iter().find(|f| f.end > offset).or(open.fed.back()).map(|f| f.received_ms);
        // Deterministic: the arrival times of the messages the chunk's bytes came in.
        let wall_clock_ms = received_at(open.chunk_start).unwrap_or(segmented_ms);
        let last_packet_ms = received_at(chunk.input_end.saturating_sub(1)).unwrap_or(segmented_ms);
        let key = keys::source_chunk(&self.stream, &open.id, sequence);
        let size = chunk.data.len() as u64;
        let session_id = open.id.clone();
        let data = Bytes::from(chunk.data);
        let span = open.spans.remove(&sequence).unwrap_or_else(|| {
            tracing::info_span!(parent: None, "segmenter.chunk", stream = %self.stream, session = %session_id, sequence)
        });
        let (input_end, next) = (chunk.input_end, chunk.next.clone());

        let stored = async {
            match self.store(&key, data).await {
                Ok(()) => {
                    let event = Event::ChunkUploaded(ChunkUploaded {
                        stream: self.stream.clone(),
                        session_id: session_id.clone(),
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
                    // Unannounced, the chunk would never be transcoded: not checkpointed, so the next owner redoes it.
                    self.publish(&event).await?;
                    metrics::ChunkUploaded {
                        stream: &self.stream,
                        sequence,
                        duration_s: chunk.duration as f64 / CLOCK as f64,
                        size,
                    }
                    .emit();
                }
                Err(reason) => {
                    // Without its source the chunk cannot be transcoded: a gap the playlists skip, said out loud.
                    tracing::error!(stream = %self.stream, sequence, %reason, "storing chunk failed");
                    let failed = Event::ChunkFailed(ChunkFailed {
                        stream: self.stream.clone(),
                        session_id: session_id.clone(),
                        sequence,
                        has_sequence: true,
                        stage: "segmenter".into(),
                        reason,
                        permanent: true,
                    });
                    self.publish(&failed).await?;
                    ladder_telemetry::chunk_failed("segmenter");
                }
            }
            Ok::<(), OwnerError>(())
        }
        .instrument(span);
        stored.await?;

        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.next_sequence = sequence + 1;
        open.chunk_start = input_end;
        let Some(next) = next else {
            return Ok(()); // the session's last chunk: `close` checkpoints
        };
        while open.fed.front().is_some_and(|f| f.end <= next.input_offset) {
            open.fed.pop_front();
        }
        let Some(at) = open.fed.front() else {
            return Err(OwnerError::Checkpoint("the next chunk starts in no message seen".into()));
        };
        let checkpoint = Checkpoint {
            session: open.id.clone(),
            closed: false,
            failed: false,
            next_sequence: open.next_sequence,
            stream_seq: at.stream_seq,
            ladder_seq: at.ladder_seq,
            skip: next.input_offset - at.start,
            resume: Some(next),
        };
        self.save(checkpoint).await
    }

    /// Publishes an event. A duplicate with other content is a bug the bus reports: said loudly, and left as
    /// stored (the first announcement stands) rather than retried for ever.
    async fn publish(&self, event: &Event) -> Result<(), OwnerError> {
        match self.shared.bus.publish_event(event).await {
            Err(BusError::DuplicateConflict { subject, message_id }) => {
                tracing::error!(
                    stream = %self.stream, %subject, %message_id,
                    "an event with this id was already published with other content; the first one stands"
                );
                Ok(())
            }
            other => other.map_err(OwnerError::from),
        }
    }

    /// Stores a chunk write-once. `Err` with the reason when it cannot be stored.
    async fn store(&self, key: &str, data: Bytes) -> Result<(), String> {
        let mut round = 0;
        loop {
            round += 1;
            match self.shared.storage.put(key, data.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind == ErrorKind::Conflict => {
                    return Err(format!("{e}: the key already holds other bytes and objects are write-once"))
                }
                Err(e) if e.kind == ErrorKind::Transient && round < PUT_ROUNDS => {
                    tracing::warn!(stream = %self.stream, key, round, error = %e, "storing chunk failed, retrying");
                    tokio::time::sleep(Duration::from_secs(1 << round)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Writes the checkpoint if it is still ours (compare-and-swap on the revision read or last written).
    async fn save(&mut self, checkpoint: Checkpoint) -> Result<(), OwnerError> {
        let value = Bytes::from(checkpoint.encode());
        let result = match self.revision {
            Some(revision) => self.shared.checkpoints.update(&self.stream, value, revision).await.map_err(|e| {
                if e.kind() == UpdateErrorKind::WrongLastRevision {
                    OwnerError::Lost
                } else {
                    OwnerError::Checkpoint(e.to_string())
                }
            }),
            None => self.shared.checkpoints.create(&self.stream, value).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    OwnerError::Lost
                } else {
                    OwnerError::Checkpoint(e.to_string())
                }
            }),
        };
        self.revision = Some(result?);
        self.checkpoint = checkpoint;
        Ok(())
    }
}
