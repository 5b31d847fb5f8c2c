//! The JetStream key-value buckets of ladder: state that must outlive a process and be shared by every
//! instance of a service. Declared here, next to the streams in [`crate::topology`].
//!
//! | bucket                         | key        | value                                   | expiry          |
//! |--------------------------------|------------|-----------------------------------------|-----------------|
//! | `ladder_segmenter_leases`      | `<stream>` | the instance that cuts the stream       | [`LEASE_TTL`]   |
//! | `ladder_segmenter_checkpoints` | `<stream>` | where cutting resumes (JSON)            | never           |
//! | `ladder_publishers`            | `<stream>` | the ingest instance with its publisher  | [`LEASE_TTL`]   |
//!
//! A lease is a key whose holder rewrites it (compare-and-swap on its revision) more often than the bucket's
//! `max_age`: when the holder dies the key expires on the server, and another instance can `create` it.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::BusError;

pub const SEGMENTER_LEASES: &str = "ladder_segmenter_leases";
pub const SEGMENTER_CHECKPOINTS: &str = "ladder_segmenter_checkpoints";
pub const PUBLISHERS: &str = "ladder_publishers";

/// How long a lease outlives the last renewal of a holder that died.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often holders renew their leases: several renewals fit in one [`LEASE_TTL`].
pub const LEASE_RENEW: Duration = Duration::from_millis(750);

/// The configuration of bucket `name`, with `replicas` copies of each entry.
pub fn config(name: &str, replicas: usize) -> Option<kv::Config> {
    let max_age = match name {
        SEGMENTER_LEASES | PUBLISHERS => LEASE_TTL,
        SEGMENTER_CHECKPOINTS => Duration::ZERO,
        _ => return None,
    };
    Some(kv::Config {
        bucket: name.to_string(),
        history: 1,
        max_age,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
}

/// Every bucket name, for [`crate::topology::ensure`].
pub const BUCKETS: [&str; 3] = [SEGMENTER_LEASES, SEGMENTER_CHECKPOINTS, PUBLISHERS];

/// Opens bucket `name`, creating it if it does not exist. An existing bucket is used as it is.
pub async fn bucket(js: &jetstream::Context, name: &str, replicas: usize) -> Result<kv::Store, BusError> {
    let error = |message: String| BusError::Topology { what: format!("key-value bucket {name}"), message };
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = config(name, replicas).ok_or_else(|| error("not declared in kv::BUCKETS".into()))?;
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another instance created it at the same moment.
        Err(create) => js.get_key_value(name).await.map_err(|_| error(create.to_string())),
    }
}
