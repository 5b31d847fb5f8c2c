//! The JetStream streams, durable consumers and key-value buckets of ladder. This file is the one place the
//! streams and consumers are declared ([`crate::kv`] declares the buckets).
//!
//! | stream          | subjects                                             | consumers                 |
//! |-----------------|------------------------------------------------------|---------------------------|
//! | `LADDER_INGEST` | `ingest.ts.<stream>`                                 | none: each segmenter reads the streams it owns with ordered consumers |
//! | `LADDER_EVENTS` | `stream.started/ended/failed.<stream>`, `chunk.started/uploaded.<stream>`, `rendition.ready.<stream>`, `chunk.failed.<stream>`, `ladder.set.<stream>` | `transcoder` (chunk.started), `indexer` (all) |
//! | `LADDER_PARTS`  | `part.ready.<stream>`                                | none: each manifest reads them with an ordered consumer |
//!
//! The event stream is the source of truth: it keeps events for a long time so the index can be rebuilt by
//! replaying it. Raw TS is only kept long enough for the segmenter to catch up after a restart, and for the
//! transcoders, which read a chunk's bytes from it as they arrive. LL-HLS parts are worth listing for seconds:
//! their stream keeps them for minutes, so a manifest that starts finds the parts of the live edge.
//!
//! # What [`ensure`] does to a running deployment
//! Every instance of every service calls [`ensure`] when it starts, so it has to be safe against a cluster an
//! operator has tuned, and against other instances doing the same at the same moment:
//! - a **stream** that is missing is created as declared here, with the bus's replica count
//!   ([`crate::Bus::replicas`]). An existing stream keeps its limits and replicas: the only change made to it
//!   is adding declared subjects it does not cover yet (a newer ladder adds an event kind). Every other
//!   setting that differs from the declaration is logged as a warning ("keeping the operator's value");
//! - a **consumer** that is missing is created. An existing durable whose declared settings (`ack_wait`,
//!   `max_deliver`, `max_ack_pending`, `filter_subject`, replicas) differ is updated, so a setting changed in
//!   code reaches existing deployments. Its replicas follow its stream's, whatever they are. nats-server 2.9
//!   applies a create request for an existing durable as an update of those settings (checked by
//!   `tests/topology.rs`), which is the request sent here;
//! - a **key-value bucket** ([`crate::kv::BUCKETS`]) that is missing is created with the bus's replica count;
//!   an existing one is used as it is.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer},
    context::GetStreamErrorKind,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
    ErrorCode,
};
use ladder_proto::subject;

use crate::{kv, BusError};

pub const INGEST_STREAM: &str = "LADDER_INGEST";
pub const EVENTS_STREAM: &str = "LADDER_EVENTS";
pub const PARTS_STREAM: &str = "LADDER_PARTS";
pub const INGEST_PREFIX: &str = "ingest.ts";

/// The durable consumer of the segmenter before streams were owned by one instance each (lease and checkpoint
/// in key-value buckets, ordered consumers): deleted by [`ensure`] where an older ladder left it.
pub const LEGACY_SEGMENTER: &str = "segmenter";
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

pub const CONSUMERS: [ConsumerSpec; 2] = [
    // A worker takes a chunk when it starts (chunk.started) and transcodes it as it arrives. Workers send a
    // progress ack every 2 s while ffmpeg runs, so the ack wait only has to notice a dead worker: another one
    // gets the chunk 6 s later. The transcoder gives a chunk up itself after 3 attempts; max_deliver is only the
    // backstop for a chunk that kills its worker before it can count.
    ConsumerSpec {
        durable: TRANSCODER,
        stream: EVENTS_STREAM,
        filter: "chunk.started.>",
        ack_wait: Duration::from_secs(6),
        max_ack_pending: 1_000,
        max_deliver: 10,
    },
    // Applying an event to the index takes milliseconds: a short ack wait lets another indexer pick up what
    // a killed one held, so the live edge resumes within seconds.
    ConsumerSpec {
        durable: INDEXER,
        stream: EVENTS_STREAM,
        filter: "",
        ack_wait: Duration::from_secs(5),
        max_ack_pending: 1_000,
        max_deliver: -1,
    },
];

/// How long LL-HLS parts are kept: a manifest lists the parts of the last three target durations, and one that
/// starts reads the last minute of them.
pub const PARTS_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The declared streams, with `replicas` copies of each message.
pub fn stream_configs(replicas: usize) -> [jetstream::stream::Config; 3] {
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
            num_replicas: replicas.max(1),
            ..Default::default()
        },
        jetstream::stream::Config {
            name: EVENTS_STREAM.to_string(),
            subjects: subject::ALL.iter().map(|prefix| format!("{prefix}.*")).collect(),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(600),
            num_replicas: replicas.max(1),
            ..Default::default()
        },
        jetstream::stream::Config {
            name: PARTS_STREAM.to_string(),
            subjects: vec![ladder_proto::parts::ALL.to_string()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            max_age: PARTS_MAX_AGE,
            max_bytes: 256 << 20,
            discard: DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    ]
}

/// Creates the streams, consumers and key-value buckets that do not exist yet, adds missing subjects to
/// existing streams and brings existing consumers to their declared settings; see the module doc for what
/// is left alone. Safe to call from every instance at the same time.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<(), BusError> {
    for config in stream_configs(replicas) {
        ensure_stream(js, config).await?;
    }
    for spec in &CONSUMERS {
        ensure_consumer(js, spec).await?;
    }
    remove_legacy_consumers(js).await;
    for name in kv::BUCKETS {
        kv::bucket(js, name, replicas).await?;
    }
    Ok(())
}

/// Left in place, the old segmenter durable would keep 15 minutes of raw TS pending for nobody.
async fn remove_legacy_consumers(js: &jetstream::Context) {
    let Ok(stream) = js.get_stream(INGEST_STREAM).await else {
        return;
    };
    if stream.consumer_info(LEGACY_SEGMENTER).await.is_ok() {
        match stream.delete_consumer(LEGACY_SEGMENTER).await {
            Ok(_) => tracing::info!(consumer = LEGACY_SEGMENTER, "deleted the consumer of an older segmenter"),
            Err(e) => tracing::warn!(consumer = LEGACY_SEGMENTER, error = %e, "cannot delete an unused consumer"),
        }
    }
}

// === streams ===

async fn ensure_stream(js: &jetstream::Context, declared: jetstream::stream::Config) -> Result<(), BusError> {
    let name = declared.name.clone();
    let error = |message: String| BusError::Topology { what: format!("stream {name}"), message };
    let existing = match js.get_stream(&name).await {
        Ok(stream) => stream.cached_info().config.clone(),
        Err(e) if is_stream_not_found(&e) => match js.create_stream(declared.clone()).await {
            Ok(_) => {
                tracing::info!(stream = %name, replicas = declared.num_replicas, "created jetstream stream");
                return Ok(());
            }
            // Another instance created it a moment ago (perhaps an older ladder, with other settings): treat
            // it as existing.
            Err(create) => match js.get_stream(&name).await {
                Ok(stream) => stream.cached_info().config.clone(),
                Err(_) => return Err(error(create.to_string())),
            },
        },
        Err(e) => return Err(error(e.to_string())),
    };
    for difference in stream_differences(&declared, &existing) {
        tracing::warn!(
            stream = %name,
            setting = difference.setting,
            declared = %difference.declared,
            current = %difference.current,
            "stream setting differs from the declared one, keeping the operator's value"
        );
    }
    let missing = missing_subjects(&declared.subjects, &existing.subjects);
    if missing.is_empty() {
        return Ok(());
    }
    // The existing configuration with only the subjects added: limits and replicas stay as they are.
    let mut updated = existing;
    updated.subjects.extend(missing.iter().cloned());
    js.update_stream(updated).await.map_err(|e| error(format!("adding subjects {missing:?}: {e}")))?;
    tracing::info!(stream = %name, subjects = ?missing, "added subjects to jetstream stream");
    Ok(())
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A setting whose current value is not the declared one.
#[derive(Debug, PartialEq)]
pub struct Difference {
    pub setting: &'static str,
    pub declared: String,
    pub current: String,
}

/// The settings of an existing stream that differ from its declaration, subjects aside (they are merged).
pub fn stream_differences(
    declared: &jetstream::stream::Config,
    current: &jetstream::stream::Config,
) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut compare = |setting: &'static str, declared: String, current: String| {
        if declared != current {
            differences.push(Difference { setting, declared, current });
        }
    };
    compare("max_age", format!("{:?}", declared.max_age), format!("{:?}", current.max_age));
    // A limit left unset is sent as 0 and reported back by the server as -1: both mean none.
    let limit = |value: i64| if value <= 0 { "unlimited".to_string() } else { value.to_string() };
    compare("max_bytes", limit(declared.max_bytes), limit(current.max_bytes));
    compare("max_messages", limit(declared.max_messages), limit(current.max_messages));
    compare(
        "max_messages_per_subject",
        limit(declared.max_messages_per_subject),
        limit(current.max_messages_per_subject),
    );
    compare("max_message_size", limit(declared.max_message_size.into()), limit(current.max_message_size.into()));
    compare("discard", format!("{:?}", declared.discard), format!("{:?}", current.discard));
    compare("duplicate_window", format!("{:?}", declared.duplicate_window), format!("{:?}", current.duplicate_window));
    compare("storage", format!("{:?}", declared.storage), format!("{:?}", current.storage));
    compare("retention", format!("{:?}", declared.retention), format!("{:?}", current.retention));
    compare("num_replicas", declared.num_replicas.to_string(), current.num_replicas.to_string());
    differences
}

/// The declared subjects that no existing subject covers. An operator may have widened a subject
/// (`ingest.ts.>` for `ingest.ts.*`); adding the narrower one again would overlap and be refused.
pub fn missing_subjects(declared: &[String], existing: &[String]) -> Vec<String> {
    declared.iter().filter(|subject| !existing.iter().any(|wider| covers(wider, subject))).cloned().collect()
}

/// Whether every subject matched by `narrow` is matched by `wide` (NATS wildcards `*` and `>`).
fn covers(wide: &str, narrow: &str) -> bool {
    let mut wide = wide.split('.');
    let mut narrow = narrow.split('.');
    loop {
        match (wide.next(), narrow.next()) {
            (None, None) => return true,
            // `>` matches one or more tokens, whatever they are.
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(w), Some(n)) if w == n => {}
            _ => return false,
        }
    }
}

// === consumers ===

/// Gets the durable consumer named `durable` as declared in [`CONSUMERS`], creating it if it is missing and
/// updating it if its declared settings differ.
pub async fn consumer(js: &jetstream::Context, durable: &str) -> Result<PullConsumer, BusError> {
    consumer_named(js, durable, durable).await
}

/// A durable consumer with the settings declared for `declared` under another name: an indexer with an
/// index of its own (a SQLite file) reads every event through a consumer of its own.
pub async fn consumer_named(js: &jetstream::Context, declared: &str, name: &str) -> Result<PullConsumer, BusError> {
    let spec = CONSUMERS.iter().find(|spec| spec.durable == declared).ok_or_else(|| BusError::Topology {
        what: format!("consumer {declared}"),
        message: "not declared in topology::CONSUMERS".into(),
    })?;
    ensure_named_consumer(js, spec, name).await
}

async fn ensure_consumer(js: &jetstream::Context, spec: &ConsumerSpec) -> Result<PullConsumer, BusError> {
    ensure_named_consumer(js, spec, spec.durable).await
}

async fn ensure_named_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    durable: &str,
) -> Result<PullConsumer, BusError> {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    let error = |message: String| BusError::Topology { what: format!("consumer {durable}"), message };
    let stream = js.get_stream(spec.stream).await.map_err(|e| error(e.to_string()))?;
    // A consumer cannot have more replicas than its stream, and needs no fewer: it follows the stream, whose
    // replicas the operator may have changed.
    let replicas = stream.cached_info().config.num_replicas.max(1);
    let mut declared = consumer_config(spec, replicas);
    declared.durable_name = Some(durable.to_string());
    let current = match stream.consumer_info(durable).await {
        Ok(info) => info.config,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            let consumer = stream.create_consumer(declared).await.map_err(|e| error(e.to_string()))?;
            tracing::info!(consumer = durable, stream = spec.stream, replicas, "created jetstream consumer");
            return Ok(consumer);
        }
        Err(e) => return Err(error(e.to_string())),
    };
    let differences = consumer_differences(&declared, &current, replicas);
    if differences.is_empty() {
        return stream.get_consumer(durable).await.map_err(|e| error(e.to_string()));
    }
    for difference in &differences {
        tracing::info!(
            consumer = durable,
            setting = difference.setting,
            declared = %difference.declared,
            current = %difference.current,
            "updating consumer setting to the declared value"
        );
    }
    // On nats-server 2.9 a create request for an existing durable updates it in place (its delivery state
    // stays); the server refuses settings it cannot change, which surfaces here as an error.
    stream.create_consumer(declared).await.map_err(|e| error(format!("updating {differences:?}: {e}")))
}

fn consumer_config(spec: &ConsumerSpec, replicas: usize) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.to_string()),
        filter_subject: spec.filter.to_string(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        max_deliver: spec.max_deliver,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The declared settings of a consumer that differ on the server. A consumer created with 0 replicas (an
/// older ladder) has its stream's, `stream_replicas`.
pub fn consumer_differences(
    declared: &pull::Config,
    current: &jetstream::consumer::Config,
    stream_replicas: usize,
) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut compare = |setting: &'static str, declared: String, current: String| {
        if declared != current {
            differences.push(Difference { setting, declared, current });
        }
    };
    compare("ack_wait", format!("{:?}", declared.ack_wait), format!("{:?}", current.ack_wait));
    compare("max_deliver", declared.max_deliver.to_string(), current.max_deliver.to_string());
    compare("max_ack_pending", declared.max_ack_pending.to_string(), current.max_ack_pending.to_string());
    compare("filter_subject", declared.filter_subject.clone(), current.filter_subject.clone());
    let replicas = |r: usize| if r == 0 { stream_replicas } else { r };
    compare("num_replicas", replicas(declared.num_replicas).to_string(), replicas(current.num_replicas).to_string());
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wider_subject_covers_a_declared_one() {
        assert!(covers("ingest.ts.*", "ingest.ts.*"));
        assert!(covers("ingest.ts.>", "ingest.ts.*"));
        assert!(covers("ingest.>", "ingest.ts.*"));
        assert!(covers(">", "chunk.failed.*"));
        assert!(covers("*.failed.*", "chunk.failed.*"));
        assert!(!covers("ingest.ts.cam1", "ingest.ts.*"));
        assert!(!covers("ingest.ts.*", "ingest.ts.>"));
        assert!(!covers("ingest.ts", "ingest.ts.*"));
        assert!(!covers("ingest.ts.*.x", "ingest.ts.*"));
        assert!(!covers("chunk.uploaded.*", "chunk.failed.*"));
    }

    #[test]
    fn only_uncovered_subjects_are_missing() {
        let declared: Vec<String> = ["chunk.uploaded.*", "chunk.failed.*", "ladder.set.*"].map(String::from).into();
        let existing: Vec<String> = ["chunk.>", "stream.started.*"].map(String::from).into();
        assert_eq!(missing_subjects(&declared, &existing), vec!["ladder.set.*".to_string()]);
    }

    #[test]
    fn stream_differences_name_each_setting() {
        let [declared, _, _] = stream_configs(3);
        let mut current = declared.clone();
        assert!(stream_differences(&declared, &current).is_empty());
        // What the server reports for limits left unset is not a difference.
        let mut reported = declared.clone();
        (reported.max_messages, reported.max_messages_per_subject, reported.max_message_size) = (-1, -1, -1);
        assert!(stream_differences(&declared, &reported).is_empty());
        current.max_age = Duration::from_secs(3600);
        current.num_replicas = 1;
        current.subjects.push("other.*".into());
        let settings: Vec<_> = stream_differences(&declared, &current).into_iter().map(|d| d.setting).collect();
        assert_eq!(settings, ["max_age", "num_replicas"]);
    }

    #[test]
    fn a_consumer_with_zero_replicas_has_its_streams() {
        let spec = &CONSUMERS[1];
        let declared = consumer_config(spec, 3);
        let current = jetstream::consumer::Config {
            durable_name: Some(spec.durable.into()),
            filter_subject: spec.filter.into(),
            ack_wait: spec.ack_wait,
            max_ack_pending: spec.max_ack_pending,
            max_deliver: spec.max_deliver,
            num_replicas: 0,
            ..Default::default()
        };
        assert!(consumer_differences(&declared, &current, 3).is_empty());
        let settings: Vec<_> = consumer_differences(&declared, &current, 1).into_iter().map(|d| d.setting).collect();
        assert_eq!(settings, ["num_replicas"]);
        let older = jetstream::consumer::Config { ack_wait: Duration::from_secs(30), max_deliver: 5, ..current };
        let settings: Vec<_> = consumer_differences(&declared, &older, 3).into_iter().map(|d| d.setting).collect();
        assert_eq!(settings, ["ack_wait", "max_deliver"]);
    }
}
