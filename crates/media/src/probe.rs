//! What a finished TS file holds, read with the same parser the segmenter cuts with.

use crate::{chunker::Chunker, MediaError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    /// Unwrapped PTS of the first IDR.
    pub first_pts: u64,
    /// From the first IDR to one frame past the last PTS.
    pub duration: u64,
    /// The first video access unit is an IDR (nothing was dropped before it).
    pub starts_with_idr: bool,
}

pub fn probe(data: &[u8]) -> Result<Option<Probe>, MediaError> {
    let mut chunker = Chunker::new(u64::MAX / 4);
    chunker.push(data)?;
    let Some(chunk) = chunker.finish() else {
        return Ok(None);
    };
    Ok(Some(Probe {
        width: chunk.width,
        height: chunk.height,
        codecs: chunk.codecs,
        first_pts: chunk.first_pts,
        duration: chunk.duration,
        starts_with_idr: chunker.dropped_before_first_idr() == 0,
    }))
}
