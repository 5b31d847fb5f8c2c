//! The JetStream key-value buckets of ladder: state that must outlive a process and be shared by every
//! instance of a service. Declared here, next to the streams in [`crate::topology`].
//!
//! | bucket                         | key        | value                                   | expiry          |
//! |--------------------------------|------------|-----------------------------------------|-----------------|
//! | `ladder_segmenter_leases`      | `<stream>` | the instance that cuts the stream       | [`LEASE_TTL`]   |
//! | `ladder_segmenter_checkpoints` | `<stream>` | where cutting resumes (JSON)            | never           |
//! | `ladder_publishers`            | `<stream>` | the ingest instance with its publisher  | [`LEASE_TTL`]   |
//! | `ladder_stream_keys`           | `<stream>` | the SRT passphrase publishers must use  | never           |
//!
//! Stream keys are set by an operator (`ladder stream set-key`) and read by ingest through a live view
//! ([`crate::keys`]); one revision per key is kept, so a rotated or removed key is gone from the store.
//!
//! A lease is a key whose holder rewrites it (compare-and-swap on its revision) more often than the bucket's
//! `max_age`: when the holder dies the key expires on the server, and another instance can `create` it.

use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    stream::{DiscardPolicy, StorageType},
};

use crate::BusError;

pub const SEGMENTER_LEASES: &str = "ladder_segmenter_leases";
pub const SEGMENTER_CHECKPOINTS: &str = "ladder_segmenter_checkpoints";
pub const PUBLISHERS: &str = "ladder_publishers";
pub const STREAM_KEYS: &str = "ladder_stream_keys";

/// How long a lease outlives the last renewal of a holder that died.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often holders renew their leases: several renewals fit in one [`LEASE_TTL`].
pub const LEASE_RENEW: Duration = Duration::from_millis(750);

/// The JetStream stream behind bucket `name`, with `replicas` copies of each entry: what
/// `Context::create_key_value` would make. Made here because that call first asks for account details that
/// async-nats 0.51 cannot parse from a nats-server 2.9 (Debian's).
pub fn stream_config(name: &str, replicas: usize) -> Option<jetstream::stream::Config> {
    let max_age = match name {
        SEGMENTER_LEASES | PUBLISHERS => LEASE_TTL,
        SEGMENTER_CHECKPOINTS | STREAM_KEYS => Duration::ZERO,
        _ => return None,
    };
    Some(jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        // The server refuses a duplicate window longer than max_age.
        duplicate_window: if max_age.is_zero() { Duration::from_secs(120) } else { max_age },
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
}

/// Every bucket name, for [`crate::topology::ensure`].
pub const BUCKETS: [&str; 4] = [SEGMENTER_LEASES, SEGMENTER_CHECKPOINTS, PUBLISHERS, STREAM_KEYS];

/// Opens bucket `name`, creating it if it does not exist. An existing bucket is used as it is.
pub async fn bucket(js: &jetstream::Context, name: &str, replicas: usize) -> Result<kv::Store, BusError> {
    let error = |message: String| BusError::Topology { what: format!("key-value bucket {name}"), message };
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = stream_config(name, replicas).ok_or_else(|| error("not declared in kv::BUCKETS".into()))?;
    // Another instance may create it at the same moment: then the second create fails and the get succeeds.
    let created = js.create_stream(config).await;
    js.get_key_value(name).await.map_err(|e| match created {
        Err(create) => error(create.to_string()),
        Ok(_) => error(e.to_string()),
    })
}
