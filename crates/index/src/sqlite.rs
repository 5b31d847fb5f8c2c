//! The SQLite index: one file, WAL journal, usable by several processes on one machine.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use ladder_proto::{Event, LadderSet};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Index, IndexError, Rendition, Segment, Session};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    stream TEXT NOT NULL,
    session_id TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    remote_addr TEXT NOT NULL DEFAULT '',
    chunk_count INTEGER,
    PRIMARY KEY (stream, session_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    stream TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    first_pts INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    wall_clock_ms INTEGER NOT NULL,
    discontinuity INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    codecs TEXT NOT NULL,
    PRIMARY KEY (stream, session_id, sequence)
);
CREATE TABLE IF NOT EXISTS renditions (
    stream TEXT NOT NULL,
    session_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    first_pts INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    wall_clock_ms INTEGER NOT NULL,
    discontinuity INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bitrate INTEGER NOT NULL,
    codecs TEXT NOT NULL,
    frame_duration INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, session_id, rendition, sequence)
);
CREATE TABLE IF NOT EXISTS failures (
    stream TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    permanent INTEGER NOT NULL,
    PRIMARY KEY (stream, session_id, sequence, stage)
);
CREATE TABLE IF NOT EXISTS ladders (
    stream TEXT PRIMARY KEY,
    set_at_ms INTEGER NOT NULL,
    -- the LadderSet event, protobuf-encoded
    event BLOB NOT NULL
);
";

#[derive(Clone)]
pub struct SqliteIndex {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

impl SqliteIndex {
    pub fn open(path: &Path) -> Result<SqliteIndex, IndexError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        // Indexes made before renditions had a frame duration gain the column.
        let has_frame_duration = conn
            .prepare("SELECT 1 FROM pragma_table_info('renditions') WHERE name = 'frame_duration'")
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(backend)?;
        if !has_frame_duration {
            conn.execute_batch("ALTER TABLE renditions ADD COLUMN frame_duration INTEGER NOT NULL DEFAULT 0")
                .map_err(backend)?;
        }
        Ok(SqliteIndex { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` on the connection in the blocking pool, so a busy database never stalls the async runtime.
    async fn with<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| IndexError::Backend("index connection poisoned".into()))?;
            f(&conn).map_err(backend)
        })
        .await
        .map_err(backend)?
    }
}

fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        stream: row.get(0)?,
        session_id: row.get(1)?,
        started_at_ms: row.get(2)?,
        ended_at_ms: row.get(3)?,
        chunk_count: row.get::<_, Option<i64>>(4)?.map(|n| n as u64),
    })
}

#[async_trait]
impl Index for SqliteIndex {
    async fn apply(&self, event: &Event) -> Result<(), IndexError> {
        let event = event.clone();
        self.with(move |conn| {
            match event {
                // Transcoding's trigger: the chunk itself is indexed once it is stored (ChunkUploaded).
                Event::ChunkStarted(_) => 0,
                Event::StreamStarted(e) => conn.execute(
                    "INSERT INTO sessions (stream, session_id, started_at_ms, remote_addr) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (stream, session_id) DO UPDATE SET started_at_ms = excluded.started_at_ms,
                     remote_addr = excluded.remote_addr",
                    params![e.stream, e.session_id, e.started_at_ms, e.remote_addr],
                )?,
                Event::StreamEnded(e) => conn.execute(
                    // An end can arrive for a session whose start was not retained: it still ends it.
                    "INSERT INTO sessions (stream, session_id, started_at_ms, ended_at_ms, chunk_count)
                     VALUES (?1, ?2, ?3, ?3, ?4)
                     ON CONFLICT (stream, session_id) DO UPDATE SET ended_at_ms = excluded.ended_at_ms,
                     chunk_count = excluded.chunk_count",
                    params![e.stream, e.session_id, e.ended_at_ms, e.chunk_count as i64],
                )?,
                Event::ChunkUploaded(e) => conn.execute(
                    "INSERT OR REPLACE INTO chunks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        e.stream,
                        e.session_id,
                        e.sequence as i64,
                        e.object_key,
                        e.size_bytes as i64,
                        e.first_pts as i64,
                        e.duration as i64,
                        e.wall_clock_ms,
                        e.discontinuity,
                        e.width,
                        e.height,
                        e.codecs
                    ],
                )?,
                Event::RenditionReady(e) => conn.execute(
                    "INSERT OR REPLACE INTO renditions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    params![
                        e.stream,
                        e.session_id,
                        e.rendition,
                        e.sequence as i64,
                        e.object_key,
                        e.size_bytes as i64,
                        e.first_pts as i64,
                        e.duration as i64,
                        e.wall_clock_ms,
                        e.discontinuity,
                        e.width,
                        e.height,
                        e.bitrate as i64,
                        e.codecs,
                        e.frame_duration as i64
                    ],
                )?,
                Event::ChunkFailed(e) => conn.execute(
                    "INSERT OR REPLACE INTO failures VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        e.stream,
                        e.session_id,
                        if e.has_sequence { e.sequence as i64 } else { -1 },
                        e.stage,
                        e.reason,
                        e.permanent
                    ],
                )?,
                Event::StreamFailed(e) => conn.execute(
                    "INSERT OR REPLACE INTO failures VALUES (?1, ?2, -1, ?3, ?4, 1)",
                    params![e.stream, e.session_id, e.stage, e.reason],
                )?,
                // The newest ladder wins, whatever order events are applied in.
                Event::LadderSet(e) => conn.execute(
                    "INSERT INTO ladders VALUES (?1, ?2, ?3)
                     ON CONFLICT (stream) DO UPDATE SET set_at_ms = excluded.set_at_ms, event = excluded.event
                     WHERE excluded.set_at_ms >= ladders.set_at_ms",
                    params![e.stream, e.set_at_ms, e.encode_to_vec()],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn streams(&self) -> Result<Vec<Session>, IndexError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT stream, session_id, started_at_ms, ended_at_ms, chunk_count FROM sessions s
                 WHERE session_id = (SELECT session_id FROM sessions t WHERE t.stream = s.stream
                                     ORDER BY started_at_ms DESC, session_id DESC LIMIT 1)
                 ORDER BY started_at_ms DESC",
            )?;
            let rows = stmt.query_map([], session_row)?;
            rows.collect()
        })
        .await
    }

    async fn latest_session(&self, stream: &str) -> Result<Option<Session>, IndexError> {
        let stream = stream.to_string();
        self.with(move |conn| {
            conn.query_row(
                "SELECT stream, session_id, started_at_ms, ended_at_ms, chunk_count FROM sessions WHERE stream = ?1
                 ORDER BY started_at_ms DESC, session_id DESC LIMIT 1",
                params![stream],
                session_row,
            )
            .optional()
        })
        .await
    }

    async fn sessions(&self, stream: &str) -> Result<Vec<Session>, IndexError> {
        let stream = stream.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT stream, session_id, started_at_ms, ended_at_ms, chunk_count FROM sessions WHERE stream = ?1
                 ORDER BY started_at_ms, session_id",
            )?;
            let rows = stmt.query_map(params![stream], session_row)?;
            rows.collect()
        })
        .await
    }

    async fn renditions(&self, stream: &str, session: &str) -> Result<Vec<Rendition>, IndexError> {
        let (stream, session) = (stream.to_string(), session.to_string());
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT rendition, MAX(width), MAX(height), MAX(bitrate), MAX(codecs),
                        MAX(size_bytes * 8 * 90000 / MAX(duration, 1)),
                        SUM(size_bytes) * 8 * 90000 / MAX(SUM(duration), 1), MAX(sequence), MAX(frame_duration)
                 FROM renditions WHERE stream = ?1 AND session_id = ?2
                 GROUP BY rendition ORDER BY MAX(bitrate) DESC, rendition",
            )?;
            let rows = stmt.query_map(params![stream, session], |row| {
                Ok(Rendition {
                    name: row.get(0)?,
                    width: row.get(1)?,
                    height: row.get(2)?,
                    bitrate: row.get::<_, i64>(3)? as u64,
                    codecs: row.get(4)?,
                    peak_bps: row.get::<_, i64>(5)? as u64,
                    average_bps: row.get::<_, i64>(6)? as u64,
                    last_sequence: row.get::<_, i64>(7)? as u64,
                    frame_duration: row.get::<_, i64>(8)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn segments(&self, stream: &str, session: &str, rendition: &str) -> Result<Vec<Segment>, IndexError> {
        let (stream, session, rendition) = (stream.to_string(), session.to_string(), rendition.to_string());
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT sequence, object_key, size_bytes, first_pts, duration, wall_clock_ms, discontinuity
                 FROM renditions WHERE stream = ?1 AND session_id = ?2 AND rendition = ?3 ORDER BY sequence",
            )?;
            let rows = stmt.query_map(params![stream, session, rendition], |row| {
                Ok(Segment {
                    sequence: row.get::<_, i64>(0)? as u64,
                    object_key: row.get(1)?,
                    size_bytes: row.get::<_, i64>(2)? as u64,
                    first_pts: row.get::<_, i64>(3)? as u64,
                    duration: row.get::<_, i64>(4)? as u64,
                    wall_clock_ms: row.get(5)?,
                    discontinuity: row.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn ladder(&self, stream: &str) -> Result<Option<LadderSet>, IndexError> {
        let stream = stream.to_string();
        let blob: Option<Vec<u8>> = self
            .with(move |conn| {
                conn.query_row("SELECT event FROM ladders WHERE stream = ?1", params![stream], |row| row.get(0))
                    .optional()
            })
            .await?;
        blob.map(|b| LadderSet::decode(b.as_slice()).map_err(backend)).transpose()
    }

    async fn failed_chunks(&self, stream: &str, session: &str) -> Result<Vec<u64>, IndexError> {
        let (stream, session) = (stream.to_string(), session.to_string());
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT sequence FROM failures
                 WHERE stream = ?1 AND session_id = ?2 AND permanent AND sequence >= 0 ORDER BY sequence",
            )?;
            let rows = stmt.query_map(params![stream, session], |row| Ok(row.get::<_, i64>(0)? as u64))?;
            rows.collect()
        })
        .await
    }
}
