//! The JetStream streams and durable consumers of ladder. This file is the one place they are declared.
//!
//! | stream          | subjects                                             | consumers                 |
//! |-----------------|------------------------------------------------------|---------------------------|
//! | `LADDER_INGEST` | `ingest.ts.<stream>`                                 | `segmenter`               |
//! | `LADDER_EVENTS` | `stream.started/ended/failed.<stream>`, `chunk.uploaded.<stream>`, `rendition.ready.<stream>`, `chunk.failed.<stream>`, `ladder.set.<stream>` | `transcoder` (chunk.uploaded), `indexer` (all) |
//!
//! The event stream is the source of truth: it keeps events for a long time so the index can be rebuilt by
//! replaying it. Raw TS is only kept long enough for the segmenter to catch up after a restart.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer},
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use ladder_proto::subject;

use crate::BusError;

pub const INGEST_STREAM: &str = "LADDER_INGEST";
pub const EVENTS_STREAM: &str = "LADDER_EVENTS";
pub const INGEST_PREFIX: &str = "ingest.ts";

pub const SEGMENTER: &str = "segmenter";
pub const TRANSCODER: &str = "transcoder";
pub const INDEXER: &str = "indexer";

pub fn ingest_subject(stream: &str) -> String {
    format!("{INGEST_PREFIX}.{stream}")
}

/// A durable consumer: which stream it reads, which subjects, and how long work on one message may take
/// before JetStream redelivers it.
pub struct ConsumerSpec {
    pub durable: &'static str,
    pub stream: &'static str,
    pub filter: &'static str,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
}

pub const CONSUMERS: [ConsumerSpec; 3] = [
    // The segmenter holds the acks of a chunk's messages until the chunk is stored and announced: with many
    // streams that is many messages, hence the large max_ack_pending.
    ConsumerSpec {
        durable: SEGMENTER,
        stream: INGEST_STREAM,
        filter: "ingest.ts.>",
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 50_000,
        max_deliver: -1,
    },
    // Workers report progress while ffmpeg runs, so the ack wait only has to cover a stalled worker.
    ConsumerSpec {
        durable: TRANSCODER,
        stream: EVENTS_STREAM,
        filter: "chunk.uploaded.>",
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 1_000,
        max_deliver: 5,
    },
    ConsumerSpec {
        durable: INDEXER,
        stream: EVENTS_STREAM,
        filter: "",
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 1_000,
        max_deliver: -1,
    },
];

fn stream_configs() -> [jetstream::stream::Config; 2] {
    [
        jetstream::stream::Config {
            name: INGEST_STREAM.to_string(),
            subjects: vec![format!("{INGEST_PREFIX}.*")],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            max_age: Duration::from_secs(15 * 60),
            max_bytes: 4 << 30,
            discard: DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
        jetstream::stream::Config {
            name: EVENTS_STREAM.to_string(),
            subjects: subject::ALL.iter().map(|prefix| format!("{prefix}.*")).collect(),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        },
    ]
}

/// Creates the streams and consumers that do not exist yet, and brings existing streams to the declared
/// configuration (a newer ladder adds event subjects). Safe to call from every service at start.
pub async fn ensure(js: &jetstream::Context) -> Result<(), BusError> {
    for config in stream_configs() {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| BusError::Topology { what: format!("stream {name}"), message: e.to_string() })?;
    }
    for spec in &CONSUMERS {
        consumer(js, spec.durable).await?;
    }
    Ok(())
}

/// Gets (creating if needed) the durable consumer named `durable`.
pub async fn consumer(js: &jetstream::Context, durable: &str) -> Result<PullConsumer, BusError> {
    let topology = |message: String| BusError::Topology { what: format!("consumer {durable}"), message };
    let spec = CONSUMERS
        .iter()
        .find(|spec| spec.durable == durable)
        .ok_or_else(|| topology("not declared in topology::CONSUMERS".into()))?;
    let stream = js.get_stream(spec.stream).await.map_err(|e| topology(e.to_string()))?;
    stream
        .get_or_create_consumer(
            spec.durable,
            pull::Config {
                durable_name: Some(spec.durable.to_string()),
                filter_subject: spec.filter.to_string(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: spec.ack_wait,
                max_ack_pending: spec.max_ack_pending,
                max_deliver: spec.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| topology(e.to_string()))
}
