//! # Layout
//! The `ladder.v1` messages generated from `proto/ladder/v1/events.proto`, and [`Event`], which ties each
//! message to its JetStream subject (`<kind>.<stream>`) so every service encodes and decodes events one way.
//! [`SrtStats`] is no event: ingest's connection samples, on the core NATS subjects of [`stats`].
#![forbid(unsafe_code)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/ladder.v1.rs"));
}

use prost::Message;
pub use v1::{
    ChunkFailed, ChunkStarted, ChunkUploaded, LadderSet, PartReady, RawTsPosition, RenditionConfig, RenditionReady,
    SrtStats, StreamEnded, StreamFailed, StreamStarted, Timing,
};

/// Subject prefixes of the events; the full subject is `<prefix>.<stream>`.
pub mod subject {
    pub const STREAM_STARTED: &str = "stream.started";
    pub const STREAM_ENDED: &str = "stream.ended";
    pub const CHUNK_STARTED: &str = "chunk.started";
    pub const CHUNK_UPLOADED: &str = "chunk.uploaded";
    pub const RENDITION_READY: &str = "rendition.ready";
    pub const CHUNK_FAILED: &str = "chunk.failed";
    pub const STREAM_FAILED: &str = "stream.failed";
    pub const LADDER_SET: &str = "ladder.set";
    /// Every event prefix.
    pub const ALL: [&str; 8] = [
        STREAM_STARTED,
        STREAM_ENDED,
        CHUNK_STARTED,
        CHUNK_UPLOADED,
        RENDITION_READY,
        CHUNK_FAILED,
        STREAM_FAILED,
        LADDER_SET,
    ];
}

/// Subjects of live samples, published on core NATS: no JetStream stream covers them (the events stream
/// takes the [`subject::ALL`] prefixes, the ingest stream `ingest.ts.*`), so nothing is retained and a
/// subscriber sees only what is published while it listens. A lost sample is not worth a retry.
pub mod stats {
    /// Prefix of [`SrtStats`](crate::SrtStats) samples; the full subject is `stats.srt.<stream>`.
    pub const SRT_PREFIX: &str = "stats.srt";
    /// Every stream's SRT samples.
    pub const SRT_ALL: &str = "stats.srt.>";

    /// The subject of the SRT samples of `stream`.
    pub fn srt_subject(stream: &str) -> String {
        format!("{SRT_PREFIX}.{stream}")
    }
}

/// LL-HLS parts: [`PartReady`](crate::PartReady) messages on the JetStream stream `LADDER_PARTS`, which keeps
/// them for minutes, not in the event log (a part is worth listing for a few seconds; the finished segment is an
/// event).
pub mod parts {
    /// Prefix of [`PartReady`](crate::PartReady); the full subject is `part.ready.<stream>`.
    pub const PREFIX: &str = "part.ready";
    /// Every stream's parts.
    pub const ALL: &str = "part.ready.*";
    pub fn subject(stream: &str) -> String {
        format!("{PREFIX}.{stream}")
    }
}

impl PartReady {
    /// `part.ready.<stream>`.
    pub fn subject(&self) -> String {
        parts::subject(&self.stream)
    }

    /// Deterministic, for JetStream de-duplication: a worker that redoes a chunk announces the same parts.
    pub fn message_id(&self) -> String {
        format!("part.{}.{}.{}.{}.{}", self.stream, self.session_id, self.sequence, self.rendition, self.part)
    }
}

impl SrtStats {
    /// The core NATS subject the sample is published on: `stats.srt.<stream>`.
    pub fn subject(&self) -> String {
        stats::srt_subject(&self.stream)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("subject {0:?} is not a ladder event subject")]
    UnknownSubject(String),
    #[error("malformed {subject} payload: {source}")]
    Malformed { subject: String, source: prost::DecodeError },
}

/// One event of the event log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    StreamStarted(StreamStarted),
    StreamEnded(StreamEnded),
    ChunkStarted(ChunkStarted),
    ChunkUploaded(ChunkUploaded),
    RenditionReady(RenditionReady),
    ChunkFailed(ChunkFailed),
    StreamFailed(StreamFailed),
    LadderSet(LadderSet),
}

impl Event {
    pub fn stream(&self) -> &str {
        match self {
            Event::StreamStarted(e) => &e.stream,
            Event::StreamEnded(e) => &e.stream,
            Event::ChunkStarted(e) => &e.stream,
            Event::ChunkUploaded(e) => &e.stream,
            Event::RenditionReady(e) => &e.stream,
            Event::ChunkFailed(e) => &e.stream,
            Event::StreamFailed(e) => &e.stream,
            Event::LadderSet(e) => &e.stream,
        }
    }

    pub fn subject_prefix(&self) -> &'static str {
        match self {
            Event::StreamStarted(_) => subject::STREAM_STARTED,
            Event::StreamEnded(_) => subject::STREAM_ENDED,
            Event::ChunkStarted(_) => subject::CHUNK_STARTED,
            Event::ChunkUploaded(_) => subject::CHUNK_UPLOADED,
            Event::RenditionReady(_) => subject::RENDITION_READY,
            Event::ChunkFailed(_) => subject::CHUNK_FAILED,
            Event::StreamFailed(_) => subject::STREAM_FAILED,
            Event::LadderSet(_) => subject::LADDER_SET,
        }
    }

    pub fn subject(&self) -> String {
        format!("{}.{}", self.subject_prefix(), self.stream())
    }

    /// A deterministic id for JetStream de-duplication (`Nats-Msg-Id`): publishing the same fact twice, as a
    /// retry does, yields the same id.
    pub fn message_id(&self) -> String {
        match self {
            Event::StreamStarted(e) => format!("started.{}.{}", e.stream, e.session_id),
            Event::StreamEnded(e) => format!("ended.{}.{}", e.stream, e.session_id),
            Event::ChunkStarted(e) => format!("chunk-started.{}.{}.{}", e.stream, e.session_id, e.sequence),
            Event::ChunkUploaded(e) => {
                format!("chunk.{}.{}.{}", e.stream, e.session_id, e.sequence)
            }
            Event::RenditionReady(e) => {
                format!("rendition.{}.{}.{}.{}", e.stream, e.session_id, e.sequence, e.rendition)
            }
            Event::ChunkFailed(e) => {
                format!("failed.{}.{}.{}.{}.{}", e.stream, e.session_id, e.has_sequence, e.sequence, e.stage)
            }
            Event::StreamFailed(e) => format!("stream-failed.{}.{}.{}", e.stream, e.session_id, e.stage),
            Event::LadderSet(e) => format!("ladder.{}.{}", e.stream, e.set_at_ms),
        }
    }

    /// Whether `other` states the same fact as `self`, as a retried publish of it would: JetStream answers
    /// a publish whose `Nats-Msg-Id` it already stored with `duplicate`, and the stored event must then be
    /// this one. Compared field by field except what is measured anew on every attempt:
    /// - `ChunkUploaded.timing` and `RenditionReady.timing` (instrumentation: when each stage ran);
    /// - nothing else. `StreamStarted`, `StreamEnded`, `ChunkStarted`, `ChunkFailed`, `StreamFailed` and `LadderSet` are
    ///   compared whole: their times (`started_at_ms`, `ended_at_ms`, `failed_at_ms`, `set_at_ms`) and the
    ///   chunks' `wall_clock_ms` are facts about the stream that the index and the playlists use, so whoever
    ///   publishes an event again must derive them from the same input.
    pub fn same_content(&self, other: &Event) -> bool {
        match (self, other) {
            (Event::ChunkUploaded(a), Event::ChunkUploaded(b)) => {
                ChunkUploaded { timing: None, ..a.clone() } == ChunkUploaded { timing: None, ..b.clone() }
            }
            (Event::RenditionReady(a), Event::RenditionReady(b)) => {
                RenditionReady { timing: None, ..a.clone() } == RenditionReady { timing: None, ..b.clone() }
            }
            (a, b) => a == b,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Event::StreamStarted(e) => e.encode_to_vec(),
            Event::StreamEnded(e) => e.encode_to_vec(),
            Event::ChunkStarted(e) => e.encode_to_vec(),
            Event::ChunkUploaded(e) => e.encode_to_vec(),
            Event::RenditionReady(e) => e.encode_to_vec(),
            Event::ChunkFailed(e) => e.encode_to_vec(),
            Event::StreamFailed(e) => e.encode_to_vec(),
            Event::LadderSet(e) => e.encode_to_vec(),
        }
    }

    /// Decodes a payload by the subject it was published on.
    pub fn decode(subject: &str, payload: &[u8]) -> Result<Event, DecodeError> {
        let malformed = |source| DecodeError::Malformed { subject: subject.to_string(), source };
        let prefix = subject
            .rsplit_once('.')
            .map(|(prefix, _)| prefix)
            .ok_or_else(|| DecodeError::UnknownSubject(subject.to_string()))?;
        Ok(match prefix {
            subject::STREAM_STARTED => Event::StreamStarted(StreamStarted::decode(payload).map_err(malformed)?),
            subject::STREAM_ENDED => Event::StreamEnded(StreamEnded::decode(payload).map_err(malformed)?),
            subject::CHUNK_STARTED => Event::ChunkStarted(ChunkStarted::decode(payload).map_err(malformed)?),
            subject::CHUNK_UPLOADED => Event::ChunkUploaded(ChunkUploaded::decode(payload).map_err(malformed)?),
            subject::RENDITION_READY => Event::RenditionReady(RenditionReady::decode(payload).map_err(malformed)?),
            subject::CHUNK_FAILED => Event::ChunkFailed(ChunkFailed::decode(payload).map_err(malformed)?),
            subject::STREAM_FAILED => Event::StreamFailed(StreamFailed::decode(payload).map_err(malformed)?),
            subject::LADDER_SET => Event::LadderSet(LadderSet::decode(payload).map_err(malformed)?),
            _ => return Err(DecodeError::UnknownSubject(subject.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> ChunkUploaded {
        ChunkUploaded {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            sequence: 7,
            object_key: "live/cam-1/s1/source/00000007.ts".into(),
            size_bytes: 1000,
            first_pts: 900_000,
            duration: 180_000,
            wall_clock_ms: 1_700_000_000_000,
            discontinuity: false,
            width: 1280,
            height: 720,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            timing: None,
            frame_duration: 0,
        }
    }

    #[test]
    fn round_trips_through_its_subject() {
        let event = Event::ChunkUploaded(chunk());
        assert_eq!(event.subject(), "chunk.uploaded.cam-1");
        let decoded = Event::decode(&event.subject(), &event.encode()).expect("decodes");
        assert_eq!(decoded, event);
    }

    #[test]
    fn message_ids_are_deterministic() {
        assert_eq!(Event::ChunkUploaded(chunk()).message_id(), "chunk.cam-1.s1.7");
    }

    /// Golden encoding: a change here means the wire format changed, which ladder.v1 never allows.
    #[test]
    fn golden_chunk_uploaded_encoding() {
        let bytes = Event::ChunkUploaded(chunk()).encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0a0563616d2d3112027331180722206c6976652f63616d2d312f73312f736f757263652f30303030303030372e747328e80730a0f73638a0fe0a4080d095ffbc3150800a58d0056215617663312e3634303031662c6d7034612e34302e32"
        );
    }

    fn rendition() -> RenditionReady {
        RenditionReady {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            sequence: 7,
            rendition: "720p".into(),
            object_key: "live/cam-1/s1/720p/00000007.ts".into(),
            size_bytes: 500,
            first_pts: 900_000,
            duration: 180_000,
            wall_clock_ms: 1_700_000_000_000,
            discontinuity: false,
            width: 1280,
            height: 720,
            bitrate: 3_000_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            timing: Some(Timing { transcode_started_ms: 1, ..Default::default() }),
            frame_duration: 3000,
        }
    }

    #[test]
    fn a_retry_with_other_timing_has_the_same_content() {
        let first = Event::ChunkUploaded(ChunkUploaded {
            timing: Some(Timing { segmented_ms: 1, ..Default::default() }),
            ..chunk()
        });
        let retry = Event::ChunkUploaded(ChunkUploaded {
            timing: Some(Timing { segmented_ms: 2, uploaded_ms: 3, ..Default::default() }),
            ..chunk()
        });
        assert!(first.same_content(&retry));
        assert!(first.same_content(&Event::ChunkUploaded(chunk())), "no timing at all");
        let retry = Event::RenditionReady(RenditionReady { timing: None, ..rendition() });
        assert!(Event::RenditionReady(rendition()).same_content(&retry));
    }

    #[test]
    fn any_other_field_makes_the_content_differ() {
        let first = Event::ChunkUploaded(chunk());
        for other in [
            ChunkUploaded { object_key: "live/cam-1/s1/source/00000008.ts".into(), ..chunk() },
            ChunkUploaded { size_bytes: 1001, ..chunk() },
            ChunkUploaded { first_pts: 1, ..chunk() },
            ChunkUploaded { duration: 1, ..chunk() },
            ChunkUploaded { wall_clock_ms: 1, ..chunk() },
            ChunkUploaded { discontinuity: true, ..chunk() },
            ChunkUploaded { frame_duration: 3000, ..chunk() },
        ] {
            assert!(!first.same_content(&Event::ChunkUploaded(other.clone())), "{other:?}");
        }
        let first = Event::RenditionReady(rendition());
        for other in [
            RenditionReady { size_bytes: 501, ..rendition() },
            RenditionReady { codecs: "avc1.4d401f".into(), ..rendition() },
            RenditionReady { bitrate: 1, ..rendition() },
        ] {
            assert!(!first.same_content(&Event::RenditionReady(other.clone())), "{other:?}");
        }
        let ended = StreamEnded {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            ended_at_ms: 5,
            bytes_received: 10,
            reason: "disconnected".into(),
            chunk_count: 3,
        };
        let first = Event::StreamEnded(ended.clone());
        assert!(first.same_content(&Event::StreamEnded(ended.clone())));
        assert!(!first.same_content(&Event::StreamEnded(StreamEnded { chunk_count: 4, ..ended.clone() })));
        assert!(!first.same_content(&Event::StreamEnded(StreamEnded { ended_at_ms: 6, ..ended })));
        assert!(!first.same_content(&Event::ChunkUploaded(chunk())), "another kind");
    }

    #[test]
    fn unknown_subjects_are_refused() {
        assert!(matches!(Event::decode("foo.bar", &[]), Err(DecodeError::UnknownSubject(_))));
    }

    fn srt_stats() -> SrtStats {
        SrtStats {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            remote_addr: "10.0.0.2:5555".into(),
            sampled_at_ms: 1_700_000_000_000,
            elapsed_ms: 65_000,
            rtt_ms: 12.5,
            recv_rate_mbps: 2.25,
            bytes_received: 16_000_000,
            packets_received: 12_000,
            packets_lost: 3,
            packets_retransmitted: 2,
            packets_dropped: 1,
            packets_undecrypted: 0,
            flight_size: 4,
            recv_buffer_ms: 120,
            recv_buffer_bytes: 30_080,
            latency_ms: 120,
            encrypted: true,
            key_length: 16,
        }
    }

    #[test]
    fn srt_stats_go_to_core_nats_subjects_no_stream_covers() {
        assert_eq!(srt_stats().subject(), "stats.srt.cam-1");
        assert!(stats::SRT_ALL.starts_with(stats::SRT_PREFIX));
        assert!(!subject::ALL.iter().any(|prefix| srt_stats().subject().starts_with(prefix)));
        assert!(matches!(Event::decode(&srt_stats().subject(), &[]), Err(DecodeError::UnknownSubject(_))));
    }

    /// Golden encoding of a sample: ingest and `ladder events` may be of different versions.
    #[test]
    fn golden_srt_stats_encoding() {
        let bytes = srt_stats().encode_to_vec();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0a0563616d2d31120273311a0d31302e302e302e323a353535352080d095ffbc3128e8fb033100000000000029403900000000000002404080c8d00748e05d50035802600170047878800180eb01880178900101980110"
        );
        assert_eq!(SrtStats::decode(bytes.as_slice()).expect("decodes"), srt_stats());
    }

    fn chunk_started() -> ChunkStarted {
        ChunkStarted {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            sequence: 7,
            first_pts: 900_000,
            wall_clock_ms: 1_700_000_000_000,
            discontinuity: false,
            width: 1280,
            height: 720,
            frame_duration: 3600,
            source: Some(RawTsPosition {
                stream_sequence: 41,
                ladder_sequence: 12,
                skip: 1504,
                chunker_state: b"{}".to_vec(),
            }),
            target_duration: 180_000,
        }
    }

    #[test]
    fn golden_chunk_started_encoding() {
        let event = Event::ChunkStarted(chunk_started());
        assert_eq!(event.subject(), "chunk.started.cam-1");
        assert_eq!(event.message_id(), "chunk-started.cam-1.s1.7");
        let hex: String = event.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0a0563616d2d3112027331180720a0f7362880d095ffbc3138800a40d00548901c520b0829100c18e00b22027b7d58a0fe0a"
        );
        assert_eq!(Event::decode(&event.subject(), &event.encode()).expect("decodes"), event);
    }

    fn part() -> PartReady {
        PartReady {
            stream: "cam-1".into(),
            session_id: "s1".into(),
            sequence: 7,
            rendition: "720p".into(),
            part: 2,
            object_key: "parts/cam-1/s1/720p/00000007.2.ts".into(),
            size_bytes: 90_000,
            duration: 43_200,
            independent: false,
            last: false,
            part_target: 45_000,
            wall_clock_ms: 1_700_000_000_000,
            stored_ms: 1_700_000_001_000,
        }
    }

    /// Parts are no event: their own subjects, which the event stream does not take.
    #[test]
    fn golden_part_ready_encoding() {
        assert_eq!(part().subject(), "part.ready.cam-1");
        assert_eq!(part().message_id(), "part.cam-1.s1.7.720p.2");
        assert!(!subject::ALL.iter().any(|prefix| part().subject().starts_with(&format!("{prefix}."))));
        let hex: String = part().encode_to_vec().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0a0563616d2d311202733118072204373230702802322170617274732f63616d2d312f73312f373230702f30303030303030372e322e74733890bf0540c0d10258c8df026080d095ffbc3168e8d795ffbc31");
        assert_eq!(PartReady::decode(part().encode_to_vec().as_slice()).expect("decodes"), part());
    }
}
