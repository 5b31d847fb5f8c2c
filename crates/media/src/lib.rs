//! # Layout
//! Hand-written because no maintained crate cuts a transport stream at packet level while keeping every
//! byte: the segmenter must copy the publisher's packets unchanged, only deciding where chunks begin.
//! - [`ts`]: MPEG-TS packets, PSI (PAT/PMT) and PES headers;
//! - [`h264`]: Annex B NAL scanning and the SPS fields ladder needs (size, RFC 6381 codecs);
//! - [`aac`]: the ADTS header (RFC 6381 codecs);
//! - [`chunker`]: the state machine that turns a byte stream into self-contained chunks, each starting with
//!   PAT, PMT and an IDR, with durations from exact 90 kHz timestamps;
//! - [`parts`]: cuts an encoded rendition chunk into LL-HLS partial segments as the encoder writes it;
//! - [`probe`]: reads what a finished TS file holds (used on transcoder output).
#![forbid(unsafe_code)]

pub mod aac;
pub mod chunker;
pub mod h264;
pub mod parts;
pub mod probe;
pub mod ts;

pub use chunker::{Chunk, Chunker, Resume, Started};
pub use parts::{Part, PartCutter};

/// Ticks per second of MPEG timestamps.
pub const CLOCK: u64 = 90_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("not an MPEG transport stream: no 0x47 sync pattern in {0} bytes")]
    NotTransportStream(usize),
    #[error("unsupported video codec {0} (ladder takes H.264)")]
    UnsupportedVideo(String),
    #[error("the program has no video stream (PMT lists {0})")]
    NoVideo(String),
    #[error("no PAT/PMT and no video keyframe in the first {0} bytes")]
    NoProgram(usize),
    #[error("no H.264 keyframe (IDR) in {0} bytes of video")]
    NoKeyframe(usize),
    #[error("no H.264 keyframe for {seconds} s ({bytes} bytes) of video: set the encoder's keyframe interval to at most the chunk duration")]
    KeyframeInterval { seconds: u64, bytes: usize },
}
