//! # Layout
//! A pool of pull workers on `chunk.uploaded.<stream>` (durable consumer `transcoder`, shared by every worker
//! of every transcoder process). For each chunk one ffmpeg run produces every rendition of the ladder
//! ([`ffmpeg::command`]); the renditions are stored and announced with `rendition.ready.<stream>`, then the
//! chunk is acknowledged. A failing chunk is retried with a delay, and after [`MAX_ATTEMPTS`] it is announced
//! with `chunk.failed.<stream>` so the playlists can skip it.
//!
//! The ladder is read for every chunk, as the original design read its config table: the last
//! `ladder.set.<stream>` event in the event stream if there is one ([`current_ladder`]), the configured
//! default otherwise. A change therefore applies from the next chunk, with nothing to restart.
#![forbid(unsafe_code)]

pub mod ffmpeg;
pub mod ladder;

use std::time::Duration;

use async_nats::jetstream::{message::AckKind, Message};
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{topology, Bus, BusError};
use ladder_proto::{ChunkFailed, ChunkUploaded, Event, RenditionReady, Timing};
use ladder_storage::{keys, Storage};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

pub use ladder::{default_ladder, LadderError, RenditionSpec};

/// Deliveries of one chunk before it is declared failed for good.
pub const MAX_ATTEMPTS: i64 = 3;

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
}

#[derive(Debug, thiserror::Error)]
pub enum TranscoderError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("malformed chunk event: {0}")]
    Malformed(String),
    #[error("{0}")]
    Storage(#[from] ladder_storage::StorageError),
    #[error("{0}")]
    Ffmpeg(#[from] ffmpeg::FfmpegError),
    #[error("{0}")]
    Bus(#[from] BusError),
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), TranscoderError> {
    let bus = Bus::connect(&config.nats_url).await?;
    let workers = config.workers.max(1);
    tracing::info!(workers, renditions = config.ladder.len(), "transcoder started");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (bus, config, shutdown) = (bus.clone(), config.clone(), shutdown.clone());
        tasks.spawn(async move { work(worker, bus, config, shutdown).await });
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            shutdown.cancel();
            result = Err(e);
        }
    }
    bus.drain().await;
    tracing::info!("transcoder stopped");
    result
}

async fn work(worker: usize, bus: Bus, config: Config, shutdown: CancellationToken) -> Result<(), TranscoderError> {
    let consumer = bus.consumer(topology::TRANSCODER).await?;
    while !shutdown.is_cancelled() {
        // One message at a time, so a busy worker never sits on chunks another worker could take.
        let batch = consumer.batch().max_messages(1).expires(Duration::from_secs(2)).messages();
        let mut batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = batch => match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(worker, error = %e, "pulling chunks failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => handle(&bus, &config, message).await,
                Err(e) => tracing::warn!(worker, error = %e, "receiving chunk failed"),
            }
        }
    }
    Ok(())
}

async fn handle(bus: &Bus, config: &Config, message: Message) {
    let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
    let chunk = match ChunkUploaded::decode(message.payload.as_ref()) {
        Ok(chunk) => chunk,
        Err(e) => {
            tracing::error!(subject = %message.subject, error = %e, "dropping malformed chunk event");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let heartbeat = tokio::spawn({
        let message = message.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    });
    let result = transcode(bus, config, &chunk).await;
    heartbeat.abort();
    match result {
        Ok(()) => {
            if let Err(e) = message.ack().await {
                tracing::warn!(stream = %chunk.stream, sequence = chunk.sequence, error = %e, "ack failed");
            }
        }
        Err(error) if attempt < MAX_ATTEMPTS && !matches!(error, JobError::Malformed(_)) => {
            tracing::warn!(stream = %chunk.stream, sequence = chunk.sequence, attempt, %error, "transcode failed, will retry");
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
        }
        Err(error) => {
            tracing::error!(stream = %chunk.stream, sequence = chunk.sequence, attempt, %error, "transcode failed for good");
            let failed = Event::ChunkFailed(ChunkFailed {
                stream: chunk.stream.clone(),
                session_id: chunk.session_id.clone(),
                sequence: chunk.sequence,
                has_sequence: true,
                stage: "transcoder".into(),
                reason: error.to_string(),
                permanent: true,
            });
            match bus.publish_event(&failed).await {
                Ok(()) => {
                    let _ = message.ack_with(AckKind::Term).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot publish chunk failure, leaving it for redelivery");
                    let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
                }
            }
        }
    }
}

/// The ladder last set for `stream` with a `ladder.set.<stream>` event, if any.
pub async fn current_ladder(bus: &Bus, stream: &str) -> Result<Option<Vec<RenditionSpec>>, BusError> {
    let subject = format!("{}.{stream}", ladder_proto::subject::LADDER_SET);
    let Some(payload) = bus.last_message(topology::EVENTS_STREAM, &subject).await? else {
        return Ok(None);
    };
    match Event::decode(&subject, &payload) {
        Ok(Event::LadderSet(set)) => Ok(Some(set.renditions.iter().map(RenditionSpec::from).collect())),
        _ => {
            tracing::error!(%stream, "undecodable ladder event, using the default ladder");
            Ok(None)
        }
    }
}

async fn transcode(bus: &Bus, config: &Config, chunk: &ChunkUploaded) -> Result<(), JobError> {
    if chunk.stream.is_empty() || chunk.object_key.is_empty() {
        return Err(JobError::Malformed("missing stream or object key".into()));
    }
    let started_ms = ladder_bus::now_ms();
    let source = config.storage.get(&chunk.object_key).await?;
    let ladder = current_ladder(bus, &chunk.stream).await?.unwrap_or_else(|| config.ladder.clone());
    let renditions = ladder::fit(&ladder, chunk.width, chunk.height);
    let ffmpeg_started_ms = ladder_bus::now_ms();
    let outputs = ffmpeg::transcode(&source, &renditions, &config.preset, chunk.frame_duration).await?;
    let finished_ms = ladder_bus::now_ms();
    for (spec, output) in renditions.iter().zip(outputs) {
        let key = keys::rendition_chunk(&chunk.stream, &chunk.session_id, &spec.name, chunk.sequence);
        let size = output.data.len() as u64;
        config.storage.put(&key, Bytes::from(output.data)).await?;
        let event = Event::RenditionReady(RenditionReady {
            stream: chunk.stream.clone(),
            session_id: chunk.session_id.clone(),
            sequence: chunk.sequence,
            rendition: spec.name.clone(),
            object_key: key,
            size_bytes: size,
            // Timestamps are kept from the source, so the source chunk's are the rendition's.
            first_pts: chunk.first_pts,
            duration: chunk.duration,
            wall_clock_ms: chunk.wall_clock_ms,
            discontinuity: chunk.discontinuity,
            width: output.width,
            height: output.height,
            bitrate: spec.bitrate,
            codecs: output.codecs,
            frame_duration: chunk.frame_duration * ladder::frame_step(chunk.frame_duration, spec.max_fps),
            timing: Some(Timing {
                transcode_started_ms: started_ms,
                ffmpeg_started_ms,
                transcode_finished_ms: finished_ms,
                ..chunk.timing.unwrap_or_default()
            }),
        });
        bus.publish_event(&event).await?;
    }
    tracing::debug!(stream = %chunk.stream, sequence = chunk.sequence, ms = finished_ms - started_ms, "chunk transcoded");
    Ok(())
}
