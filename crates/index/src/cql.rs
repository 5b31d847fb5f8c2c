//! The ScyllaDB index (any CQL database with native protocol v4: ScyllaDB, Apache Cassandra 4+).
//!
//! # Data model
//! Every read the manifest makes is one partition:
//! - `segments`, partitioned by (stream, session, rendition) and clustered by sequence number: a media
//!   playlist is one partition range read;
//! - `session_renditions`, partitioned by (stream, session): the renditions a master playlist lists;
//! - `sessions`, partitioned by stream: its publish sessions (start, end, chunk count);
//! - `chunks` (source chunks) and `failures`, partitioned by (stream, session) and clustered by sequence;
//! - `ladders`, one row per stream, written `USING TIMESTAMP` its `set_at_ms`, so the newest ladder wins
//!   whatever order a replay applies them in, with no read-before-write and no lightweight transaction;
//! - `streams`, one small partition listing the stream names.
//!
//! Every statement is prepared and idempotent (upserts of what the event says), so a redelivered or replayed
//! event changes nothing. The schema is versioned: `schema_migrations` records each applied step.

use std::time::Duration;

use ::scylla::{
    client::{session::Session, session_builder::SessionBuilder},
    statement::{prepared::PreparedStatement, Consistency},
};
use async_trait::async_trait;
use futures::TryStreamExt;
use ladder_proto::{Event, LadderSet};
use prost::Message;

use crate::{Index, IndexError, Rendition, Segment, Session as PublishSession};

/// Where and how to connect: `scylla://host:9042[,host:9042...]/keyspace[?consistency=..&ttl=..&replication_factor=..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Consistency of every read and write.
    pub consistency: Consistency,
    /// Seconds after which index rows expire; 0 keeps them. Ladders never expire.
    pub ttl_seconds: u32,
    /// Replication factor of the keyspace, when this creates it.
    pub replication_factor: u32,
}

impl ScyllaConfig {
    pub fn from_url(url: &str) -> Result<ScyllaConfig, IndexError> {
        let invalid = |why: &str| IndexError::Config(format!("{url}: {why}"));
        let rest = url.strip_prefix("scylla://").ok_or_else(|| invalid("expected scylla://host:port/keyspace"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').unwrap_or((rest, "ladder"));
        let keyspace = if keyspace.is_empty() { "ladder" } else { keyspace };
        let valid = keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && keyspace.len() <= 48;
        if !valid {
            return Err(invalid("the keyspace must be 1 to 48 letters, digits or underscores, starting with a letter"));
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| if h.contains(':') { h.to_string() } else { format!("{h}:9042") })
            .collect();
        if nodes.is_empty() {
            return Err(invalid("no node to connect to"));
        }
        let mut config = ScyllaConfig {
            nodes,
            keyspace: keyspace.to_string(),
            consistency: Consistency::LocalQuorum,
            ttl_seconds: 0,
            replication_factor: 3,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "consistency" => {
                    config.consistency = parse_consistency(value).ok_or_else(|| {
                        invalid("consistency must be one, two, three, quorum, all, local_quorum or local_one")
                    })?
                }
                "ttl" => {
                    config.ttl_seconds = value
                        .parse()
                        .ok()
                        .filter(|ttl| *ttl <= MAX_TTL_SECONDS)
                        .ok_or_else(|| invalid("ttl must be whole seconds, at most 630720000 (20 years)"))?
                }
                "replication_factor" => {
                    config.replication_factor = value
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid("replication_factor must be a positive number"))?
                }
                other => return Err(invalid(&format!("unknown option {other:?}"))),
            }
        }
        Ok(config)
    }
}

/// The longest TTL CQL accepts.
const MAX_TTL_SECONDS: u32 = 630_720_000;

/// Consistency levels that work for reads and writes alike (not each_quorum: writes only).
fn parse_consistency(value: &str) -> Option<Consistency> {
    Some(match value.to_ascii_lowercase().as_str() {
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "local_one" => Consistency::LocalOne,
        _ => return None,
    })
}

/// The schema, in order. A step is never edited once released: changes are new steps.
const MIGRATIONS: &[(i32, &str, &[&str])] = &[(
    1,
    "sessions, chunks, renditions, failures, ladders",
    &[
        "CREATE TABLE IF NOT EXISTS {ks}.streams (
            shard int, stream text,
            PRIMARY KEY (shard, stream))",
        "CREATE TABLE IF NOT EXISTS {ks}.sessions (
            stream text, session_id text, started_at_ms bigint, ended_at_ms bigint, chunk_count bigint,
            remote_addr text,
            PRIMARY KEY (stream, session_id))",
        "CREATE TABLE IF NOT EXISTS {ks}.chunks (
            stream text, session_id text, sequence bigint, object_key text, size_bytes bigint, first_pts bigint,
            duration bigint, wall_clock_ms bigint, discontinuity boolean, width int, height int, codecs text,
            PRIMARY KEY ((stream, session_id), sequence))",
        "CREATE TABLE IF NOT EXISTS {ks}.session_renditions (
            stream text, session_id text, rendition text, width int, height int, bitrate bigint, codecs text,
            frame_duration bigint,
            PRIMARY KEY ((stream, session_id), rendition))",
        "CREATE TABLE IF NOT EXISTS {ks}.segments (
            stream text, session_id text, rendition text, sequence bigint, object_key text, size_bytes bigint,
            first_pts bigint, duration bigint, wall_clock_ms bigint, discontinuity boolean,
            PRIMARY KEY ((stream, session_id, rendition), sequence))",
        "CREATE TABLE IF NOT EXISTS {ks}.failures (
            stream text, session_id text, sequence bigint, stage text, reason text, permanent boolean,
            PRIMARY KEY ((stream, session_id), sequence, stage))",
        "CREATE TABLE IF NOT EXISTS {ks}.ladders (
            stream text PRIMARY KEY, set_at_ms bigint, event blob)",
    ],
)];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// session_id, started_at_ms, ended_at_ms, chunk_count
type SessionRow = (String, Option<i64>, Option<i64>, Option<i64>);
/// rendition, width, height, bitrate, codecs, frame_duration
type RenditionRow = (String, Option<i32>, Option<i32>, Option<i64>, Option<String>, Option<i64>);

struct Statements {
    add_stream: PreparedStatement,
    session_started: PreparedStatement,
    session_ended: PreparedStatement,
    chunk: PreparedStatement,
    session_rendition: PreparedStatement,
    segment: PreparedStatement,
    failure: PreparedStatement,
    ladder_set: PreparedStatement,
    stream_names: PreparedStatement,
    sessions_of: PreparedStatement,
    renditions_of: PreparedStatement,
    segments_of: PreparedStatement,
    failures_of: PreparedStatement,
    ladder_of: PreparedStatement,
}

pub struct ScyllaIndex {
    session: Session,
    statements: Statements,
    ttl: i32,
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

impl ScyllaIndex {
    /// Connects, creates the keyspace if missing, applies pending schema steps and prepares every statement.
    /// Fails if no node answers within 10 s.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaIndex, IndexError> {
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .map_err(|e| {
                IndexError::Backend(format!("cannot connect to ScyllaDB at {}: {e}", config.nodes.join(",")))
            })?;
        let ks = &config.keyspace;
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
                     {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
                    config.replication_factor
                ),
                (),
            )
            .await
            .map_err(backend)?;
        migrate(&session, ks).await?;

        let prepare = |cql: String| {
            let session = &session;
            async move {
                let mut statement = session.prepare(cql.as_str()).await.map_err(|e| backend(format!("{cql}: {e}")))?;
                statement.set_consistency(config.consistency);
                statement.set_is_idempotent(true);
                Ok::<_, IndexError>(statement)
            }
        };
        let statements = Statements {
            // Streams and sessions are small and never expire: with a TTL, a stream live for longer than the TTL
            // would vanish. Their chunks expire.
            add_stream: prepare(format!("INSERT INTO {ks}.streams (shard, stream) VALUES (0, ?)")).await?,
            session_started: prepare(format!(
                "UPDATE {ks}.sessions SET started_at_ms = ?, remote_addr = ? WHERE stream = ? AND session_id = ?"
            ))
            .await?,
            session_ended: prepare(format!(
                "UPDATE {ks}.sessions SET ended_at_ms = ?, chunk_count = ? WHERE stream = ? AND session_id = ?"
            ))
            .await?,
            chunk: prepare(format!(
                "INSERT INTO {ks}.chunks (stream, session_id, sequence, object_key, size_bytes, first_pts, duration,
                 wall_clock_ms, discontinuity, width, height, codecs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 USING TTL ?"
            ))
            .await?,
            session_rendition: prepare(format!(
                "INSERT INTO {ks}.session_renditions (stream, session_id, rendition, width, height, bitrate, codecs,
                 frame_duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            segment: prepare(format!(
                "INSERT INTO {ks}.segments (stream, session_id, rendition, sequence, object_key, size_bytes, first_pts,
                 duration, wall_clock_ms, discontinuity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            failure: prepare(format!(
                "INSERT INTO {ks}.failures (stream, session_id, sequence, stage, reason, permanent)
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            ladder_set: prepare(format!(
                "INSERT INTO {ks}.ladders (stream, set_at_ms, event) VALUES (?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            stream_names: prepare(format!("SELECT stream FROM {ks}.streams WHERE shard = 0")).await?,
            sessions_of: prepare(format!(
                "SELECT session_id, started_at_ms, ended_at_ms, chunk_count FROM {ks}.sessions WHERE stream = ?"
            ))
            .await?,
            renditions_of: prepare(format!(
                "SELECT rendition, width, height, bitrate, codecs, frame_duration FROM {ks}.session_renditions
                 WHERE stream = ? AND session_id = ?"
            ))
            .await?,
            segments_of: prepare(format!(
                "SELECT sequence, object_key, size_bytes, first_pts, duration, wall_clock_ms, discontinuity
                 FROM {ks}.segments WHERE stream = ? AND session_id = ? AND rendition = ?"
            ))
            .await?,
            failures_of: prepare(format!(
                "SELECT sequence, permanent FROM {ks}.failures WHERE stream = ? AND session_id = ?"
            ))
            .await?,
            ladder_of: prepare(format!("SELECT event FROM {ks}.ladders WHERE stream = ?")).await?,
        };
        let ttl = i32::try_from(config.ttl_seconds).map_err(|_| IndexError::Config("ttl too large".into()))?;
        Ok(ScyllaIndex { session, statements, ttl })
    }

    /// Drops the keyspace: for tests that made a throw-away one.
    pub async fn drop_keyspace(&self, keyspace: &str) -> Result<(), IndexError> {
        self.session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ()).await.map_err(backend)?;
        Ok(())
    }

    async fn write(
        &self,
        statement: &PreparedStatement,
        values: impl ::scylla::serialize::row::SerializeRow,
    ) -> Result<(), IndexError> {
        self.session.execute_unpaged(statement, values).await.map_err(backend)?;
        Ok(())
    }

    /// Every row of a read, page by page.
    async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl ::scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, IndexError>
    where
        R: for<'frame, 'metadata> ::scylla::deserialize::row::DeserializeRow<'frame, 'metadata> + Send + 'static,
    {
        self.session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(backend)?
            .rows_stream::<R>()
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)
    }

    async fn sessions_of(&self, stream: &str) -> Result<Vec<PublishSession>, IndexError> {
        let rows: Vec<SessionRow> = self.rows(&self.statements.sessions_of, (stream,)).await?;
        Ok(rows
            .into_iter()
            .map(|(session_id, started, ended, chunk_count)| PublishSession {
                stream: stream.to_string(),
                session_id,
                // An end can be indexed for a session whose start was not retained: it started when it ended.
                started_at_ms: started.or(ended).unwrap_or(0),
                ended_at_ms: ended,
                chunk_count: chunk_count.map(|n| n as u64),
            })
            .collect())
    }
}

async fn migrate(session: &Session, ks: &str) -> Result<(), IndexError> {
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
                    version int PRIMARY KEY, description text, applied_at_ms bigint)"
            ),
            (),
        )
        .await
        .map_err(backend)?;
    session.await_schema_agreement().await.map_err(backend)?;
    let applied: Vec<(i32,)> = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), ())
        .await
        .map_err(backend)?
        .into_rows_result()
        .map_err(backend)?
        .rows::<(i32,)>()
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    let newest = applied.iter().map(|(v,)| *v).max().unwrap_or(0);
    if newest > SCHEMA_VERSION {
        return Err(IndexError::Config(format!(
            "keyspace {ks} has schema version {newest}, newer than this ladder's {SCHEMA_VERSION}: upgrade ladder"
        )));
    }
    for (version, description, statements) in MIGRATIONS {
        if applied.iter().any(|(v,)| v == version) {
            continue;
        }
        tracing::info!(keyspace = ks, version, description, "applying index schema step");
        for statement in *statements {
            session.query_unpaged(statement.replace("{ks}", ks), ()).await.map_err(backend)?;
        }
        session.await_schema_agreement().await.map_err(backend)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (version, description, applied_at_ms) VALUES (?, ?, ?)"),
                (*version, *description, now),
            )
            .await
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl Index for ScyllaIndex {
    async fn apply(&self, event: &Event) -> Result<(), IndexError> {
        let s = &self.statements;
        let ttl = self.ttl;
        match event {
            // Transcoding's trigger: the chunk itself is indexed once it is stored (ChunkUploaded).
            Event::ChunkStarted(_) => Ok(()),
            Event::StreamStarted(e) => {
                self.write(&s.session_started, (e.started_at_ms, &e.remote_addr, &e.stream, &e.session_id)).await?;
                self.write(&s.add_stream, (&e.stream,)).await
            }
            Event::StreamEnded(e) => {
                self.write(&s.session_ended, (e.ended_at_ms, e.chunk_count as i64, &e.stream, &e.session_id)).await?;
                self.write(&s.add_stream, (&e.stream,)).await
            }
            Event::ChunkUploaded(e) => {
                let values = (
                    &e.stream,
                    &e.session_id,
                    e.sequence as i64,
                    &e.object_key,
                    e.size_bytes as i64,
                    e.first_pts as i64,
                    e.duration as i64,
                    e.wall_clock_ms,
                    e.discontinuity,
                    e.width as i32,
                    e.height as i32,
                    &e.codecs,
                    ttl,
                );
                self.write(&s.chunk, values).await
            }
            Event::RenditionReady(e) => {
                let rendition = (
                    &e.stream,
                    &e.session_id,
                    &e.rendition,
                    e.width as i32,
                    e.height as i32,
                    e.bitrate as i64,
                    &e.codecs,
                    e.frame_duration as i64,
                    ttl,
                );
                self.write(&s.session_rendition, rendition).await?;
                let segment = (
                    &e.stream,
                    &e.session_id,
                    &e.rendition,
                    e.sequence as i64,
                    &e.object_key,
                    e.size_bytes as i64,
                    e.first_pts as i64,
                    e.duration as i64,
                    e.wall_clock_ms,
                    e.discontinuity,
                    ttl,
                );
                self.write(&s.segment, segment).await
            }
            Event::ChunkFailed(e) => {
                let sequence = if e.has_sequence { e.sequence as i64 } else { -1 };
                self.write(&s.failure, (&e.stream, &e.session_id, sequence, &e.stage, &e.reason, e.permanent, ttl))
                    .await
            }
            Event::StreamFailed(e) => {
                self.write(&s.failure, (&e.stream, &e.session_id, -1_i64, &e.stage, &e.reason, true, ttl)).await
            }
            // Written at the time it was set (in microseconds, CQL's unit): the newest ladder wins.
            Event::LadderSet(e) => {
                self.write(&s.ladder_set, (&e.stream, e.set_at_ms, e.encode_to_vec(), e.set_at_ms.saturating_mul(1000)))
                    .await
            }
        }
    }

    async fn streams(&self) -> Result<Vec<PublishSession>, IndexError> {
        let names: Vec<(String,)> = self.rows(&self.statements.stream_names, ()).await?;
        let mut latest = Vec::new();
        for (stream,) in names {
            if let Some(session) = self.latest_session(&stream).await? {
                latest.push(session);
            }
        }
        latest.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then_with(|| a.stream.cmp(&b.stream)));
        Ok(latest)
    }

    async fn sessions(&self, stream: &str) -> Result<Vec<PublishSession>, IndexError> {
        let mut sessions = self.sessions_of(stream).await?;
        sessions.sort_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.session_id.cmp(&b.session_id)));
        Ok(sessions)
    }

    async fn latest_session(&self, stream: &str) -> Result<Option<PublishSession>, IndexError> {
        let sessions = self.sessions_of(stream).await?;
        Ok(sessions
            .into_iter()
            .max_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.session_id.cmp(&b.session_id))))
    }

    async fn renditions(&self, stream: &str, session: &str) -> Result<Vec<Rendition>, IndexError> {
        let rows: Vec<RenditionRow> = self.rows(&self.statements.renditions_of, (stream, session)).await?;
        let mut renditions = Vec::new();
        for (name, width, height, bitrate, codecs, frame_duration) in rows {
            let segments = self.segments(stream, session, &name).await?;
            let Some(last) = segments.last() else { continue };
            // The same integer arithmetic as the SQLite index, so both serve identical playlists.
            let peak = segments.iter().map(|s| s.size_bytes * 8 * 90_000 / s.duration.max(1)).max().unwrap_or(0);
            let bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
            let duration: u64 = segments.iter().map(|s| s.duration).sum();
            renditions.push(Rendition {
                name,
                width: width.unwrap_or(0) as u32,
                height: height.unwrap_or(0) as u32,
                bitrate: bitrate.unwrap_or(0) as u64,
                codecs: codecs.unwrap_or_default(),
                peak_bps: peak,
                average_bps: bytes * 8 * 90_000 / duration.max(1),
                last_sequence: last.sequence,
                frame_duration: frame_duration.unwrap_or(0) as u64,
            });
        }
        renditions.sort_by(|a, b| b.bitrate.cmp(&a.bitrate).then_with(|| a.name.cmp(&b.name)));
        Ok(renditions)
    }

    async fn segments(&self, stream: &str, session: &str, rendition: &str) -> Result<Vec<Segment>, IndexError> {
        type Row = (i64, String, i64, i64, i64, i64, bool);
        let rows: Vec<Row> = self.rows(&self.statements.segments_of, (stream, session, rendition)).await?;
        Ok(rows
            .into_iter()
            .map(|(sequence, object_key, size, first_pts, duration, wall_clock_ms, discontinuity)| Segment {
                sequence: sequence as u64,
                object_key,
                size_bytes: size as u64,
                first_pts: first_pts as u64,
                duration: duration as u64,
                wall_clock_ms,
                discontinuity,
            })
            .collect())
    }

    async fn ladder(&self, stream: &str) -> Result<Option<LadderSet>, IndexError> {
        let result = self.session.execute_unpaged(&self.statements.ladder_of, (stream,)).await.map_err(backend)?;
        let row = result.into_rows_result().map_err(backend)?.maybe_first_row::<(Vec<u8>,)>().map_err(backend)?;
        row.map(|(blob,)| LadderSet::decode(blob.as_slice()).map_err(backend)).transpose()
    }

    async fn failed_chunks(&self, stream: &str, session: &str) -> Result<Vec<u64>, IndexError> {
        let rows: Vec<(i64, bool)> = self.rows(&self.statements.failures_of, (stream, session)).await?;
        let mut failed: Vec<u64> = rows
            .into_iter()
            .filter(|(sequence, permanent)| *permanent && *sequence >= 0)
            .map(|(s, _)| s as u64)
            .collect();
        failed.dedup();
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_nodes_keyspace_and_options() {
        let config = ScyllaConfig::from_url("scylla://10.0.0.1,10.0.0.2:19042/live?consistency=quorum&ttl=86400")
            .expect("valid");
        assert_eq!(config.nodes, vec!["10.0.0.1:9042".to_string(), "10.0.0.2:19042".to_string()]);
        assert_eq!(config.keyspace, "live");
        assert_eq!(config.consistency, Consistency::Quorum);
        assert_eq!(config.ttl_seconds, 86_400);
        let defaults = ScyllaConfig::from_url("scylla://db").expect("valid");
        assert_eq!((defaults.keyspace.as_str(), defaults.consistency), ("ladder", Consistency::LocalQuorum));
        for bad in [
            "scylla:///ks",
            "scylla://db/bad-name",
            "scylla://db/1ks",
            "scylla://db/ks?consistency=most",
            "scylla://db/ks?consistency=each_quorum",
            "scylla://db/ks?ttl=630720001",
            "scylla://db/ks?x=1",
        ] {
            assert!(ScyllaConfig::from_url(bad).is_err(), "{bad} is refused");
        }
    }
}
