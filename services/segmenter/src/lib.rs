//! # Layout
//! The segmenter reads raw TS from `ingest.ts.<stream>`, cuts it into chunks with [`ladder_media::Chunker`],
//! stores each chunk under a write-once key and announces it with `chunk.uploaded.<stream>`. Any number of
//! instances share the streams:
//! - this file: the coordinator. It watches which stream names have raw TS (an ordered, headers-only
//!   consumer over `ingest.ts.>`, from the last message of each name on), and claims a stream that has work
//!   and no owner by creating its lease in the key-value bucket `ladder_segmenter_leases`. Each stream is
//!   owned by exactly one instance at a time; an instance that dies stops renewing, the lease expires after
//!   `LEASE_TTL` (3 s) and another instance claims the stream. On shutdown leases are given back at once.
//! - [`owner`]: one owned stream, as its own task, so a slow storage put on one stream never stalls
//!   another: an ordered consumer from the stream's checkpoint on, the cutting, storing and announcing.
//! - [`checkpoint`]: the durable progress of a stream (session, next chunk number, the message and byte where
//!   the chunk in progress starts, the chunker's state there), in `ladder_segmenter_checkpoints`.
#![forbid(unsafe_code)]

pub mod checkpoint;
mod metrics;
mod owner;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{kv, topology, Bus, BusError};
use ladder_media::CLOCK;
use ladder_storage::Storage;
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::owner::{Outcome, Shared};

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

/// How often the coordinator looks for streams to claim.
const CLAIM_TICK: Duration = Duration::from_millis(250);
/// Before claiming a new stream an instance waits this long per stream it already owns, so that instances
/// with fewer streams claim first and streams spread over the instances.
const CLAIM_DELAY_PER_OWNED: Duration = Duration::from_millis(400);
/// After a failed claim (someone else owns the stream), the next try.
const CLAIM_RETRY: Duration = Duration::from_millis(500);
/// A raw TS watch that has said nothing for this long is started again.
const WATCH_RENEW_WHEN_SILENT: Duration = Duration::from_secs(10);
/// How long owners get to stop when the segmenter shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the coordinator knows of a stream name.
struct Known {
    /// Stream sequence of the newest raw TS message seen.
    last_seq: u64,
    /// Every message up to this stream sequence is known to be cut (an owner of this instance released it).
    settled: u64,
    /// When this instance first saw the stream with work; claims wait [`CLAIM_DELAY_PER_OWNED`] per owned stream
    /// from here.
    first_seen: Instant,
    next_attempt: Instant,
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), SegmenterError> {
    metrics::init();
    let bus = Bus::connect(&config.nats_url).await?;
    let js = bus.jetstream().clone();
    let replicas = bus.replicas();
    let shared = Arc::new(Shared {
        leases: kv::bucket(&js, kv::SEGMENTER_LEASES, replicas).await?,
        checkpoints: kv::bucket(&js, kv::SEGMENTER_CHECKPOINTS, replicas).await?,
        bus: bus.clone(),
        storage: config.storage.clone(),
        instance: instance_id(),
        target: (config.target_duration.as_secs_f64() * CLOCK as f64) as u64,
        idle_timeout: config.idle_timeout,
    });
    let consume = |e: &dyn std::fmt::Display| SegmenterError::Consume {
        subject: format!("{}.>", topology::INGEST_PREFIX),
        message: e.to_string(),
    };
    let mut activity = watch_activity(&bus).await.map_err(|e| consume(&e))?;
    tracing::info!(
        target_s = config.target_duration.as_secs_f64(), instance = %shared.instance, "segmenter started"
    );
    ladder_telemetry::health::register("segmenter: nats", ladder_telemetry::health::nats(bus.jetstream().client()));
    let storage = shared.storage.clone();
    ladder_telemetry::health::probe("segmenter: storage", shutdown.child_token(), move || {
        let storage = storage.clone();
        async move { storage.reachable().await.map_err(|e| e.to_string()) }
    });

    let mut known: HashMap<String, Known> = HashMap::new();
    let mut owners: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut owned: HashMap<String, CancellationToken> = HashMap::new();
    let mut tick = tokio::time::interval(CLAIM_TICK);
    let mut last_activity = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            message = activity.next() => match message {
                Some(Ok(message)) => {
                    last_activity = Instant::now();
                    let Some(stream) = message.subject.strip_prefix(topology::INGEST_PREFIX).and_then(|s| s.strip_prefix('.')) else {
                        continue;
                    };
                    let seq = message.info().map(|info| info.stream_sequence).unwrap_or_default();
                    let entry = known.entry(stream.to_string()).or_insert_with(|| Known {
                        last_seq: 0,
                        settled: 0,
                        first_seen: Instant::now(),
                        next_attempt: Instant::now(),
                    });
                    if entry.last_seq <= entry.settled && seq > entry.settled {
                        entry.first_seen = Instant::now(); // work again after a quiet spell
                    }
                    entry.last_seq = entry.last_seq.max(seq);
                }
                Some(Err(e)) => {
                    // The watch may be gone with the server that held it (a restart, a failed node).
                    tracing::warn!(error = %e, "watching raw ts failed, watching again");
                    if let Ok(watch) = watch_activity(&bus).await {
                        activity = watch;
                    }
                    last_activity = Instant::now();
                }
                None => {
                    tracing::warn!("raw ts watch ended, watching again");
                    activity = watch_activity(&bus).await.map_err(|e| consume(&e))?;
                    last_activity = Instant::now();
                }
            },
            Some(joined) = owners.join_next() => {
                let Ok((stream, outcome)) = joined else { continue };
                owned.remove(&stream);
                if let Some(entry) = known.get_mut(&stream) {
                    match outcome {
                        Outcome::Released { through } => entry.settled = entry.settled.max(through),
                        Outcome::Failed(error) => {
                            tracing::error!(%stream, %error, "cutting the stream failed, retrying");
                            entry.next_attempt = Instant::now() + Duration::from_secs(1);
                        }
                        Outcome::Stopped => entry.next_attempt = Instant::now() + CLAIM_RETRY,
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(last_activity) > WATCH_RENEW_WHEN_SILENT {
                    // Silence may be a watch lost without an error; a new one starts from each name's last message.
                    if let Ok(watch) = watch_activity(&bus).await {
                        activity = watch;
                    }
                    last_activity = now;
                }
                for (stream, entry) in known.iter_mut() {
                    if owned.contains_key(stream) || entry.last_seq <= entry.settled || entry.next_attempt > now {
                        continue;
                    }
                    // Measured now, with what this instance owns now: an instance that just took a stream waits
                    // longer for the next one, and one with fewer streams gets it.
                    if now < entry.first_seen + CLAIM_DELAY_PER_OWNED * owned.len() as u32 {
                        continue;
                    }
                    match shared.leases.create(stream, Bytes::from(shared.instance.clone())).await {
                        Ok(revision) => {
                            let stop = shutdown.child_token();
                            owned.insert(stream.clone(), stop.clone());
                            let (shared, stream) = (shared.clone(), stream.clone());
                            owners.spawn(async move {
                                let outcome = owner::own(shared, stream.clone(), revision, stop).await;
                                (stream, outcome)
                            });
                        }
                        Err(e) => {
                            if e.kind() != async_nats::jetstream::kv::CreateErrorKind::AlreadyExists {
                                tracing::warn!(%stream, error = %e, "claiming the stream failed");
                            }
                            entry.next_attempt = now + CLAIM_RETRY;
                        }
                    }
                }
            }
        }
    }
    // Owners stop where they are and give their leases back: the next owner resumes from the checkpoints.
    for stop in owned.values() {
        stop.cancel();
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while owners.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("owners did not stop in time; their leases expire on their own");
    }
    bus.drain().await;
    tracing::info!("segmenter stopped");
    Ok(())
}

/// Every stream name's newest raw TS message, then every new one, as headers only: which streams have work.
async fn watch_activity(bus: &Bus) -> Result<async_nats::jetstream::consumer::pull::Ordered, String> {
    let ingest = bus.jetstream().get_stream(topology::INGEST_STREAM).await.map_err(|e| e.to_string())?;
    let consumer = ingest
        .create_consumer(OrderedConfig {
            filter_subject: format!("{}.>", topology::INGEST_PREFIX),
            deliver_policy: DeliverPolicy::LastPerSubject,
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Names this process in leases and logs: host, process id and a random suffix.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}
