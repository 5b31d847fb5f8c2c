//! Where cutting a stream resumes: one JSON value per stream name in the key-value bucket
//! `ladder_segmenter_checkpoints`, written by the stream's owner after every chunk it stores and announces,
//! with compare-and-swap on the entry's revision so that an owner that lost its lease cannot overwrite the
//! progress of the next one.

use ladder_media::Resume;
use serde::{Deserialize, Serialize};

/// The durable progress of one stream name. Everything before `stream_seq` (and the first `skip` bytes of the
/// message at `stream_seq`) is in chunks that are stored and announced, or belongs to a session that is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The newest publish session cut on this stream; messages of older sessions are stale. Session ids sort
    /// by start time (`<unix ms, 13 digits>-<random>`). Empty before the first one.
    pub session: String,
    /// `session` ended and `stream.ended` was announced.
    pub closed: bool,
    /// `session` was refused (`stream.failed` announced): its bytes are dropped until its end.
    pub failed: bool,
    /// Sequence number of the next chunk of `session`.
    pub next_sequence: u64,
    /// JetStream sequence in `LADDER_INGEST` of the message where reading resumes; 0: from the first one.
    pub stream_seq: u64,
    /// `Ladder-Seq` of that message, for an open session.
    pub ladder_seq: u64,
    /// Bytes at the start of that message that are already in stored chunks.
    pub skip: u64,
    /// The chunker at the start of the chunk in progress; `None` for a closed or refused session.
    pub resume: Option<Resume>,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether a message of `session` comes from a session older than the newest one cut here, or from the
    /// newest one after it closed: either way there is nothing left to cut in it.
    pub fn is_stale(&self, session: &str) -> bool {
        session < self.session.as_str() || (session == self.session && self.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let checkpoint = Checkpoint {
            session: "1700000000000-abcdef01".into(),
            next_sequence: 7,
            stream_seq: 1234,
            ladder_seq: 99,
            skip: 188 * 5,
            ..Default::default()
        };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()).expect("decodes"), checkpoint);
        assert!(Checkpoint::decode(br#"{"session":"a","bogus":1}"#).is_err());
    }

    #[test]
    fn older_and_closed_sessions_are_stale() {
        let open = Checkpoint { session: "1700000000500-b".into(), ..Default::default() };
        assert!(open.is_stale("1700000000400-z"), "an older session");
        assert!(!open.is_stale("1700000000500-b"), "the open one");
        assert!(!open.is_stale("1700000000600-a"), "a newer one");
        let closed = Checkpoint { closed: true, ..open };
        assert!(closed.is_stale("1700000000500-b"), "the closed one");
        assert!(!Checkpoint::default().is_stale("1700000000000-a"), "nothing cut yet");
    }
}
