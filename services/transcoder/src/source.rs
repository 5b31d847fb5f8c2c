//! A chunk's source bytes as they arrive at ingest, so that transcoding starts with the chunk's first bytes
//! rather than once it is complete.
//!
//! `chunk.started` says where the chunk begins in the session's raw TS (JetStream `LADDER_INGEST`, subject
//! `ingest.ts.<stream>`): the message, the bytes of it that belong to earlier chunks, and the segmenter's
//! chunker state at that point. [`RawChunk`] reads the raw TS from there with an ordered consumer of its own and
//! cuts it with a chunker resumed from that state, so it produces exactly the bytes the segmenter stores for
//! the chunk, as they come (the chunker is deterministic: `crates/media/tests/chunker.rs`). It reads the raw
//! TS as the segmenter does: messages of other sessions and repeated `Ladder-Seq` numbers are skipped, a newer
//! session or the END marker ends the chunk. The segmenter may also end a session by itself (a publisher gone
//! without an END marker); when the raw TS falls silent, the event log says whether it has.
//!
//! Nothing here depends on the segmenter being alive: a segmenter that dies mid-chunk does not hold the chunk
//! up, and a transcoder that dies mid-chunk is replaced by one that reads the same bytes from the start.

use std::{collections::VecDeque, time::Duration};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use ladder_bus::{
    follow::{Follower, Start},
    header, topology, Bus,
};
use ladder_media::{Chunk, Chunker, MediaError, Resume};
use ladder_proto::{ChunkStarted, ChunkUploaded, StreamEnded};
use prost::Message as _;

/// How long the raw TS may be silent before the event log is asked whether the session ended.
const SILENCE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("malformed chunk.started: {0}")]
    Malformed(String),
    /// The raw TS where the chunk begins is no longer retained (the chunk waited longer than the stream
    /// keeps raw TS): it cannot be transcoded live.
    #[error("the raw TS of the chunk is gone (stream sequence {wanted} expected, {found} is the first retained)")]
    Expired { wanted: u64, found: u64 },
    /// The segmenter refuses the session at this point too (it announces the failure).
    #[error("the source is refused: {0}")]
    Refused(MediaError),
    #[error("reading the raw TS: {0}")]
    Bus(String),
}

/// The chunk once it is complete.
#[derive(Debug, Clone)]
pub struct Finished {
    pub chunk: Chunk,
    /// When ingest received the message that holds the chunk's last byte.
    pub last_packet_ms: i64,
    /// When this reader saw the chunk end.
    pub cut_ms: i64,
}

pub struct RawChunk {
    bus: Bus,
    stream: String,
    session: String,
    sequence: u64,
    messages: Follower,
    chunker: Chunker,
    first_message: u64,
    /// Bytes of the first message that belong to earlier chunks; `None` once it is read.
    skip: Option<u64>,
    /// `Ladder-Seq` of the next message to feed.
    expected: u64,
    /// Bytes of the chunk handed out so far.
    fed: usize,
    /// Input offset after each message fed, and when it arrived at ingest.
    arrivals: VecDeque<(u64, i64)>,
    finished: Option<Finished>,
}

impl RawChunk {
    /// Starts reading the chunk `started` announces.
    pub async fn open(bus: &Bus, started: &ChunkStarted) -> Result<RawChunk, SourceError> {
        let source = started.source.as_ref().ok_or_else(|| SourceError::Malformed("no source position".into()))?;
        let resume: Resume = serde_json::from_slice(&source.chunker_state)
            .map_err(|e| SourceError::Malformed(format!("chunker state: {e}")))?;
        let messages = Follower::new(
            bus.jetstream(),
            topology::INGEST_STREAM,
            OrderedConfig { filter_subject: topology::ingest_subject(&started.stream), ..Default::default() },
            Start::Sequence(source.stream_sequence),
        )
        .await
        .map_err(|e| SourceError::Bus(e.to_string()))?;
        Ok(RawChunk {
            bus: bus.clone(),
            stream: started.stream.clone(),
            session: started.session_id.clone(),
            sequence: started.sequence,
            messages,
            chunker: Chunker::resume(started.target_duration.max(1), resume),
            first_message: source.stream_sequence,
            skip: Some(source.skip),
            expected: source.ladder_sequence,
            fed: 0,
            arrivals: VecDeque::new(),
            finished: None,
        })
    }

    /// The next bytes of the chunk, as soon as they are in; `None` once the chunk is complete (see
    /// [`RawChunk::finished`]).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        loop {
            if self.finished.is_some() {
                return Ok(None);
            }
            let message = match tokio::time::timeout(SILENCE, self.messages.next()).await {
                Err(_) => {
                    let check = ended_elsewhere(
                        self.bus.clone(),
                        self.stream.clone(),
                        self.session.clone(),
                        self.sequence,
                        self.chunker.growing().len() as u64,
                        self.chunker.input_offset(),
                    );
                    if check.await? {
                        return Ok(self.finish());
                    }
                    continue;
                }
                Ok(None) => return Err(SourceError::Bus("the raw TS consumer ended".into())),
                Ok(Some(Err(e))) => return Err(SourceError::Bus(e.to_string())),
                Ok(Some(Ok(message))) => message,
            };
            let stream_seq = message.info().map(|info| info.stream_sequence).unwrap_or_default();
            if self.skip.is_some() && stream_seq != self.first_message {
                return Err(SourceError::Expired { wanted: self.first_message, found: stream_seq });
            }
            let value = |name: &str| message.headers.as_ref()?.get(name).map(|v| v.as_str().to_string());
            let Some(session) = value(header::SESSION) else {
                continue;
            };
            if session < self.session {
                continue;
            }
            if session > self.session {
                // A new publish session: this one sends nothing more.
                return Ok(self.finish());
            }
            if let Some(seq) = value(header::SEQUENCE).and_then(|v| v.parse::<u64>().ok()) {
                if seq < self.expected {
                    continue; // published twice
                }
                self.expected = seq + 1;
            }
            let received_ms =
                value(header::RECEIVED_MS).and_then(|v| v.parse().ok()).unwrap_or_else(ladder_bus::now_ms);
            let skip = self.skip.take().unwrap_or(0) as usize;
            let payload = message.payload.get(skip..).unwrap_or_default();
            if !payload.is_empty() {
                let done = self.chunker.push(payload).map_err(SourceError::Refused)?;
                self.arrivals.push_back((self.chunker.input_offset(), received_ms));
                if let Some(chunk) = done.into_iter().next() {
                    // The chunk ends here: what is left of it, and nothing of the next one.
                    let rest = chunk.data.get(self.fed..).unwrap_or_default().to_vec();
                    self.finished = Some(Finished {
                        last_packet_ms: self.arrival_of(chunk.input_end.saturating_sub(1)),
                        cut_ms: ladder_bus::now_ms(),
                        chunk,
                    });
                    return Ok(Some(rest).filter(|rest| !rest.is_empty()));
                }
            }
            if value(header::END).is_some() {
                return Ok(self.finish());
            }
            // Only what the chunk keeps whatever comes next: a stream that ends now drops its unfinished last
            // frame and audio packet from the chunk, and ffmpeg must not have been given them.
            let settled = self.chunker.settled();
            if settled.len() > self.fed {
                let bytes = settled[self.fed..].to_vec();
                self.fed = settled.len();
                return Ok(Some(bytes));
            }
        }
    }

    /// The complete chunk, once [`RawChunk::next`] has returned `None`; `None` if the session ended before
    /// any of it (nothing to transcode).
    pub fn finished(&self) -> Option<&Finished> {
        self.finished.as_ref()
    }

    /// The session ended with this chunk: the chunker's last chunk, and what of it was not handed out yet.
    fn finish(&mut self) -> Option<Vec<u8>> {
        let handed_out = self.chunker.growing().get(..self.fed).unwrap_or_default().to_vec();
        let chunk = self.chunker.finish()?;
        // Only settled bytes were handed out, so the finished chunk starts with them.
        debug_assert!(chunk.data.starts_with(&handed_out));
        let rest = if chunk.data.starts_with(&handed_out) { chunk.data[self.fed..].to_vec() } else { Vec::new() };
        self.finished = Some(Finished {
            last_packet_ms: self.arrival_of(chunk.input_end.saturating_sub(1)),
            cut_ms: ladder_bus::now_ms(),
            chunk,
        });
        Some(rest).filter(|rest| !rest.is_empty())
    }

    fn arrival_of(&self, offset: u64) -> i64 {
        self.arrivals.iter().find(|(end, _)| *end > offset).or(self.arrivals.back()).map_or(0, |(_, ms)| *ms)
    }
}

/// Whether the segmenter has ended the chunk without anything in the raw TS saying so (it closes a session
/// whose publisher went silent), with everything this reader has read (`growing` bytes of the chunk, input up
/// to `input_offset`): it stored this chunk with no more bytes than that, or ended the session at no later
/// input offset. Free of the reader, whose consumer cannot be shared across an await.
async fn ended_elsewhere(
    bus: Bus,
    stream: String,
    session: String,
    sequence: u64,
    growing: u64,
    input_offset: u64,
) -> Result<bool, SourceError> {
    let bus_error = |e: ladder_bus::BusError| SourceError::Bus(e.to_string());
    let subject = format!("{}.{stream}", ladder_proto::subject::CHUNK_UPLOADED);
    if let Some(payload) = bus.last_message(topology::EVENTS_STREAM, &subject).await.map_err(bus_error)? {
        if let Ok(chunk) = ChunkUploaded::decode(payload) {
            if chunk.session_id == session && chunk.sequence == sequence && growing >= chunk.size_bytes {
                return Ok(true);
            }
        }
    }
    let subject = format!("{}.{stream}", ladder_proto::subject::STREAM_ENDED);
    if let Some(payload) = bus.last_message(topology::EVENTS_STREAM, &subject).await.map_err(bus_error)? {
        if let Ok(ended) = StreamEnded::decode(payload) {
            return Ok(ended.session_id == session && input_offset >= ended.bytes_received);
        }
    }
    Ok(false)
}
