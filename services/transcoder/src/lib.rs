//! # Layout
//! - this file: a pool of pull workers on `chunk.started.<stream>` (durable consumer `transcoder`, shared by
//!   every worker of every transcoder process). A worker takes a chunk when it begins and transcodes it while it
//!   arrives; then it acks;
//! - [`job`]: one chunk: the source into one ffmpeg, every rendition's output cut into LL-HLS parts that are
//!   stored and announced (`part.ready.<stream>`) as they come, then each rendition's segment (the
//!   concatenation of its parts), stored and announced with `rendition.ready.<stream>`;
//! - [`source`]: the chunk's bytes as they arrive, read from the session's raw TS where `chunk.started` says the
//!   chunk begins, cut with the segmenter's chunker;
//! - [`ffmpeg`]: the ffmpeg command (stdin in, one pipe per rendition out), its wall-clock limit, and the checks
//!   every segment passes;
//! - [`ladder`]: ladder files and `ladder.set` events, their validation, and which renditions fit a source.
//!
//! The ladder is read for every chunk, as the original design read its config table: the last
//! `ladder.set.<stream>` event in the event stream if there is one and it is valid ([`current_ladder`]), the
//! configured default otherwise. A change therefore applies from the next chunk, with nothing to restart.
//!
//! A worker is busy with a chunk for as long as the chunk lasts (it is transcoded in real time, as it comes),
//! so a transcoder needs at least as many workers as the live streams it serves, and a few more: chunk N+1 of a
//! stream starts while chunk N's last frames are still being encoded.
//!
//! # Failures and crashes
//! - While a chunk is worked on, the worker reports progress every [`PROGRESS_EVERY`], well inside the
//!   consumer's ack wait; a worker that dies stops reporting, and JetStream hands the chunk to another worker
//!   after the ack wait (seconds, not the length of a transcode), which redoes it from its start: the same
//!   parts under the same keys (see [`job`]).
//! - ffmpeg runs under a wall-clock limit once its input has ended ([`Config::ffmpeg_timeout`]) and is killed
//!   when it is over.
//! - An ordinary failure is retried after [`RETRY_DELAY`]; the [`MAX_ATTEMPTS`]th failure is announced with
//!   `chunk.failed.<stream>` so the playlists skip the chunk. A chunk delivered more than [`MAX_ATTEMPTS`]
//!   times was left unfinished by workers that died on it: it is not run again, and is announced as failed. A
//!   chunk whose raw TS is gone, or whose parts come out other than the ones stored, is given up at once.
//! - Storage keys are write-once. If a retry finds a segment already stored with other bytes, the stored one is
//!   checked like fresh output and announced, and the new encoding is dropped.
//! - On shutdown no new chunk is pulled; chunks in flight get [`SHUTDOWN_GRACE`] to finish, and the rest are
//!   handed back at once (nak without delay) for another instance.
#![forbid(unsafe_code)]

pub mod ffmpeg;
pub mod job;
pub mod ladder;
mod metrics;
pub mod source;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{message::AckKind, Message};
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{topology, Bus, BusError};
use ladder_proto::{ChunkFailed, ChunkStarted, Event, LadderSet};
use ladder_storage::{ErrorKind, Storage};
use prost::Message as _;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use ladder::{default_ladder, LadderError, RenditionSpec};

/// Attempts at one chunk before it is declared failed for good. JetStream's own delivery limit on the consumer
/// is higher, so the last delivery is always ours to turn into a `chunk.failed` event.
pub const MAX_ATTEMPTS: i64 = 3;
/// How often a worker tells JetStream it is still on a chunk; a third of the consumer's ack wait.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The wait before an ordinary failure is tried again.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long chunks in flight may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The default wall-clock limit of ffmpeg once a chunk's input has ended: it has the last frames to encode.
pub const DEFAULT_FFMPEG_TIMEOUT: Duration = Duration::from_secs(60);
/// The default LL-HLS part target.
pub const DEFAULT_PART_TARGET: Duration = Duration::from_millis(500);
/// Time a chunk may take beyond its ffmpeg limit: it arrives in real time (the segmenter refuses chunks over
/// 60 s), and storing and publishing have their own retries; past it the attempt counts as failed rather than
/// holding the chunk with progress reports for ever.
const JOB_SLACK: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub storage: Storage,
    /// Chunks transcoded at the same time by this process.
    pub workers: usize,
    /// The ladder of streams that have none of their own.
    pub ladder: Vec<RenditionSpec>,
    /// x264 preset.
    pub preset: String,
    /// Wall-clock limit of ffmpeg once the chunk's input has ended; ffmpeg is killed and the attempt fails
    /// when it is over.
    pub ffmpeg_timeout: Duration,
    /// LL-HLS part target: each rendition chunk is cut into parts of whole frames of at most this long.
    pub part_target: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscoderError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why one attempt at a chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("malformed chunk event: {0}")]
    Malformed(String),
    #[error("{0}")]
    Storage(#[from] ladder_storage::StorageError),
    #[error("{0}")]
    Ffmpeg(#[from] ffmpeg::FfmpegError),
    #[error("{0}")]
    Bus(#[from] BusError),
    #[error("the chunk was not done within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Source(#[from] source::SourceError),
    #[error("reading ffmpeg's output: {0}")]
    Io(#[from] std::io::Error),
    /// A part came out other than the one stored under its key by an earlier attempt.
    #[error("part {key} is already stored with other bytes (an encoder that differs from the earlier attempt's): the chunk cannot be continued")]
    Diverged { key: String },
    /// A task of the job ended early because another one failed.
    #[error("aborted")]
    Aborted,
}

impl JobError {
    /// Retrying cannot help.
    fn is_permanent(&self) -> bool {
        matches!(
            self,
            JobError::Malformed(_)
                | JobError::Diverged { .. }
                | JobError::Source(source::SourceError::Expired { .. } | source::SourceError::Malformed(_))
        )
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), TranscoderError> {
    metrics::init();
    let bus = Bus::connect(&config.nats_url).await?;
    let workers = config.workers.max(1);
    tracing::info!(workers, renditions = config.ladder.len(), "transcoder started");
    ladder_telemetry::health::register("transcoder: nats", ladder_telemetry::health::nats(bus.jetstream().client()));
    let storage = config.storage.clone();
    ladder_telemetry::health::probe("transcoder: storage", shutdown.child_token(), move || {
        let storage = storage.clone();
        async move { storage.reachable().await.map_err(|e| e.to_string()) }
    });
    // Cancelled SHUTDOWN_GRACE after shutdown: chunks still in flight then are handed back.
    let abandon = CancellationToken::new();
    let grace = tokio::spawn({
        let (shutdown, abandon) = (shutdown.clone(), abandon.clone());
        async move {
            shutdown.cancelled().await;
            tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "transcoder stopping, finishing chunks in flight");
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            abandon.cancel();
        }
    });
    // One puller for the whole process, asking for one chunk at a time and only when a worker is free: at most
    // one chunk is on its way to this process when it stops, and is handed back (each delivery counts towards
    // a chunk's attempts).
    let free = Arc::new(Semaphore::new(workers));
    let (tx, rx) = mpsc::channel::<(Message, OwnedSemaphorePermit)>(workers);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (bus, config, rx, abandon) = (bus.clone(), config.clone(), rx.clone(), abandon.clone());
        tasks.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((message, _permit)) = next else { break };
                handle(&bus, &config, message, &abandon).await;
            }
            Ok(())
        });
    }
    tasks.spawn(pull(bus.clone(), free, tx, shutdown.clone()));
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            shutdown.cancel();
            result = Err(e);
        }
    }
    grace.abort();
    bus.drain().await;
    tracing::info!("transcoder stopped");
    result
}

/// Pulls one chunk whenever a worker is free, until shutdown; then closes the channel, which lets the workers
/// finish what they hold and stop.
async fn pull(
    bus: Bus,
    free: Arc<Semaphore>,
    tx: mpsc::Sender<(Message, OwnedSemaphorePermit)>,
    shutdown: CancellationToken,
) -> Result<(), TranscoderError> {
    let consumer = bus.consumer(topology::TRANSCODER).await?;
    let _backlog = AbortOnDrop(ladder_bus::metrics::watch_consumer(consumer.clone(), shutdown.clone()));
    while !shutdown.is_cancelled() {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = free.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let batch = consumer.batch().max_messages(1).expires(Duration::from_secs(2)).messages();
        let mut batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = batch => match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "pulling chunks failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let mut permit = Some(permit);
        // The request stands until it expires: a chunk that comes once shutdown began is handed back at once.
        while let Some(message) = batch.next().await {
            match (message, permit.take()) {
                (Ok(message), _) if shutdown.is_cancelled() => hand_back(&message).await,
                (Ok(message), Some(permit)) => {
                    if let Err(e) = tx.send((message, permit)).await {
                        hand_back(&e.0 .0).await;
                    }
                }
                (Ok(message), None) => hand_back(&message).await,
                (Err(e), taken) => {
                    permit = taken;
                    tracing::warn!(error = %e, "receiving chunk failed");
                }
            }
        }
    }
    Ok(())
}

async fn hand_back(message: &Message) {
    if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
        tracing::warn!(subject = %message.subject, error = %e, "handing chunk back failed, it returns after the ack wait");
    }
}

async fn handle(bus: &Bus, config: &Config, message: Message, abandon: &CancellationToken) {
    let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
    let chunk = match ChunkStarted::decode(message.payload.as_ref()) {
        Ok(chunk) => chunk,
        Err(e) => {
            tracing::error!(subject = %message.subject, error = %e, "dropping malformed chunk event");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    if attempt > MAX_ATTEMPTS {
        // Every attempt so far ended without an ack or a nak: the workers died (or hung and lost the chunk)
        // on it. Running it again would likely kill this worker too.
        let reason =
            format!("attempted {} times without finishing (workers died, stalled or were stopped)", attempt - 1);
        tracing::error!(stream = %chunk.stream, sequence = chunk.sequence, attempt, %reason, "giving up on chunk");
        give_up(bus, &message, &chunk, reason).await;
        return;
    }
    let _busy = metrics::Busy::new();
    let heartbeat = tokio::spawn({
        let message = message.clone();
        async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    });
    let limit = config.ffmpeg_timeout + JOB_SLACK;
    // A child of the segmenter's span for the chunk: the trace goes on through this worker.
    let span = tracing::info_span!(
        parent: None, "transcoder.chunk", stream = %chunk.stream, session = %chunk.session_id, sequence = chunk.sequence, attempt
    );
    ladder_telemetry::trace::set_parent(&span, message.headers.as_ref());
    let job = tracing::Instrument::instrument(job::transcode(bus, config, &chunk), span);
    let result = tokio::select! {
        result = tokio::time::timeout(limit, job) => {
            result.unwrap_or(Err(JobError::Timeout(limit)))
        }
        // Shutdown grace is over: dropping the transcode kills its ffmpeg.
        _ = abandon.cancelled() => {
            heartbeat.abort();
            tracing::info!(stream = %chunk.stream, sequence = chunk.sequence, "shutting down, handing chunk back");
            hand_back(&message).await;
            metrics::attempt("handed_back");
            return;
        }
    };
    heartbeat.abort();
    match result {
        Ok(()) => {
            if let Err(e) = message.ack().await {
                tracing::warn!(stream = %chunk.stream, sequence = chunk.sequence, error = %e, "ack failed");
            }
            metrics::attempt("done");
        }
        Err(JobError::Source(source::SourceError::Refused(error))) => {
            // The segmenter refuses the session at the same point and says so (stream.failed); the chunk never
            // completes, so there is nothing to announce.
            tracing::warn!(stream = %chunk.stream, sequence = chunk.sequence, %error, "the session's source is refused, dropping the chunk");
            let _ = message.ack_with(AckKind::Term).await;
            metrics::attempt("dropped");
        }
        Err(error) if attempt < MAX_ATTEMPTS && !error.is_permanent() => {
            tracing::warn!(stream = %chunk.stream, sequence = chunk.sequence, attempt, %error, "transcode failed, will retry");
            let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            metrics::attempt("retried");
        }
        Err(error) => {
            tracing::error!(stream = %chunk.stream, sequence = chunk.sequence, attempt, %error, "transcode failed for good");
            give_up(bus, &message, &chunk, error.to_string()).await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Announces that `chunk` failed for good, then terminates its message.
async fn give_up(bus: &Bus, message: &Message, chunk: &ChunkStarted, reason: String) {
    let failed = Event::ChunkFailed(ChunkFailed {
        stream: chunk.stream.clone(),
        session_id: chunk.session_id.clone(),
        sequence: chunk.sequence,
        has_sequence: true,
        stage: "transcoder".into(),
        reason,
        permanent: true,
    });
    match bus.publish_event(&failed).await {
        Ok(()) => {
            let _ = message.ack_with(AckKind::Term).await;
            metrics::attempt("failed");
            ladder_telemetry::chunk_failed("transcoder");
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot publish chunk failure, leaving it for redelivery");
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
        }
    }
}

/// Sets `stream`'s ladder: validates it and publishes the `ladder.set.<stream>` event every transcoder reads at
/// the start of each chunk, so it applies from the stream's next chunk. The one way to set a ladder, for the
/// command line (`ladder stream set-ladder`) and the control API alike.
pub async fn set_ladder(bus: &Bus, stream: &str, renditions: &[RenditionSpec]) -> Result<LadderSet, SetLadderError> {
    ladder::validate(renditions)?;
    let set = LadderSet {
        stream: stream.to_string(),
        renditions: renditions.iter().map(ladder_proto::RenditionConfig::from).collect(),
        set_at_ms: ladder_bus::now_ms(),
    };
    bus.publish_event(&Event::LadderSet(set.clone())).await?;
    Ok(set)
}

#[derive(Debug, thiserror::Error)]
pub enum SetLadderError {
    #[error(transparent)]
    Invalid(#[from] ladder::LadderError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The ladder last set for `stream` with a `ladder.set.<stream>` event, if any. An event that does not pass
/// [`ladder::validate`] is logged and ignored (`None`): the default ladder applies.
pub async fn current_ladder(bus: &Bus, stream: &str) -> Result<Option<Vec<RenditionSpec>>, BusError> {
    let subject = format!("{}.{stream}", ladder_proto::subject::LADDER_SET);
    let Some(payload) = bus.last_message(topology::EVENTS_STREAM, &subject).await? else {
        return Ok(None);
    };
    match Event::decode(&subject, &payload) {
        Ok(Event::LadderSet(set)) => match ladder::from_event(&set.renditions) {
            Ok(ladder) => Ok(Some(ladder)),
            Err(error) => {
                tracing::error!(%stream, %error, "invalid ladder event, using the default ladder");
                Ok(None)
            }
        },
        _ => {
            tracing::error!(%stream, "undecodable ladder event, using the default ladder");
            Ok(None)
        }
    }
}

/// A name that may be one level of an object key: no separator, no `.` or `..`.
fn key_part_ok(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\'])
}

/// What a stored rendition chunk is announced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
}

/// Stores a rendition chunk at its write-once key. If an earlier attempt already stored a different encoding
/// there (it crashed before acking), that one stays and is announced instead, once it passes the checks fresh
/// output passes: players may already have fetched it, so it must never change.
pub async fn store(storage: &Storage, key: &str, rendition: &str, output: ffmpeg::Output) -> Result<Stored, JobError> {
    let fresh =
        Stored { size: output.data.len() as u64, width: output.width, height: output.height, codecs: output.codecs };
    match storage.put(key, Bytes::from(output.data)).await {
        Ok(_) => Ok(fresh),
        Err(e) if e.kind == ErrorKind::Conflict => {
            let existing = storage.get(key).await?;
            let size = existing.len() as u64;
            let checked = ffmpeg::check(rendition, existing.to_vec())?;
            tracing::warn!(
                key,
                fresh_bytes = fresh.size,
                stored_bytes = size,
                "another encoding of this chunk is already stored, announcing that one"
            );
            Ok(Stored { size, width: checked.width, height: checked.height, codecs: checked.codecs })
        }
        Err(e) => Err(e.into()),
    }
}
