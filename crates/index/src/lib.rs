//! # Layout
//! The index is a projection of the event log: [`Index::apply`] folds one event into it, idempotently, and
//! the read methods answer what the manifest needs to write playlists. Implementations:
//! - [`sqlite::SqliteIndex`], the embedded default (WAL, so the indexer writes while the manifest reads);
//! - [`cql::ScyllaIndex`], ScyllaDB for deployments across machines.
//!
//! [`open`] picks one from a URL. The conformance suite in `tests/conformance.rs` runs against both.
#![forbid(unsafe_code)]

pub mod cql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ladder_proto::{Event, LadderSet};

pub use cql::{ScyllaConfig, ScyllaIndex};
pub use sqlite::SqliteIndex;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index backend: {0}")]
    Backend(String),
    #[error("index configuration: {0}")]
    Config(String),
}

/// Opens the index `url` names: `scylla://host:port[,host:port]/keyspace[?options]` (see [`ScyllaConfig`]),
/// `sqlite:///path/index.db`, or a plain file path (SQLite).
pub async fn open(url: &str) -> Result<Arc<dyn Index>, IndexError> {
    if url.starts_with("scylla://") {
        let config = ScyllaConfig::from_url(url)?;
        return Ok(Arc::new(ScyllaIndex::connect(&config).await?));
    }
    let path = match url.strip_prefix("sqlite://") {
        Some(path) => path,
        None if !url.contains("://") => url,
        None => {
            return Err(IndexError::Config(format!(
                "unsupported index URL {url:?}: use a file path, sqlite:///path or scylla://host:port/keyspace"
            )))
        }
    };
    Ok(Arc::new(SqliteIndex::open(std::path::Path::new(path))?))
}

/// A publish session of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub stream: String,
    pub session_id: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// Chunks cut from the session, known once it has ended.
    pub chunk_count: Option<u64>,
}

/// A rendition as it exists in one session, with bitrates measured from its stored chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Target bitrate, bits per second.
    pub bitrate: u64,
    pub codecs: String,
    /// Highest bitrate of any one chunk, bits per second.
    pub peak_bps: u64,
    /// Total bits over total duration.
    pub average_bps: u64,
    /// Sequence number of its newest chunk.
    pub last_sequence: u64,
    /// One video frame in 90 kHz ticks; 0 if unknown.
    pub frame_duration: u64,
}

/// One playable chunk of one rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub sequence: u64,
    pub object_key: String,
    pub size_bytes: u64,
    pub first_pts: u64,
    pub duration: u64,
    pub wall_clock_ms: i64,
    pub discontinuity: bool,
}

#[async_trait]
pub trait Index: Send + Sync {
    /// Folds one event into the index. Applying the same event twice leaves the index unchanged.
    async fn apply(&self, event: &Event) -> Result<(), IndexError>;

    /// Every stream's latest session, newest first.
    async fn streams(&self) -> Result<Vec<Session>, IndexError>;

    async fn latest_session(&self, stream: &str) -> Result<Option<Session>, IndexError>;

    /// Every retained session of the stream, oldest first.
    async fn sessions(&self, stream: &str) -> Result<Vec<Session>, IndexError>;

    /// The renditions that have at least one chunk in the session, by descending bitrate.
    async fn renditions(&self, stream: &str, session: &str) -> Result<Vec<Rendition>, IndexError>;

    /// The chunks of a rendition in the session, in sequence order.
    async fn segments(&self, stream: &str, session: &str, rendition: &str) -> Result<Vec<Segment>, IndexError>;

    /// The ladder last set for the stream, if one was.
    async fn ladder(&self, stream: &str) -> Result<Option<LadderSet>, IndexError>;

    /// Sequence numbers of the session's chunks that failed for good.
    async fn failed_chunks(&self, stream: &str, session: &str) -> Result<Vec<u64>, IndexError>;
}
