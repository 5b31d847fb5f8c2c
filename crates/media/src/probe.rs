//! What a finished TS file holds, read with the same parser the segmenter cuts with.

use crate::{chunker::Chunker, ts, MediaError};

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

/// How much of a chunk, in 90 kHz ticks of video from its first frame, a decoder must read before it knows
/// every stream's parameters: up to the end of the first whole audio PES packet (an AAC decoder learns the
/// sample rate there), or nothing when the program has no audio. `None` while `data`, the start of a chunk,
/// does not tell yet.
///
/// ffmpeg reads an MPEG-TS input for its whole analysis duration before it starts (the format has no
/// header, so streams could still appear), which at the default of 5 s would hold every LL-HLS part of a
/// chunk back by seconds: the transcoder waits until this is known and gives ffmpeg just that much.
pub fn needed_for_parameters(data: &[u8]) -> Option<u64> {
    let mut pmt_pid = None;
    let mut streams: Option<(Option<u16>, Option<u16>)> = None;
    let mut first_dts = None;
    let mut last_dts = None;
    let mut audio_starts = 0;
    let mut unwrapper = ts::Unwrapper::default();
    for packet in data.chunks_exact(ts::PACKET_SIZE).filter(|p| p[0] == ts::SYNC) {
        let pid = ts::pid(packet);
        if pid == ts::PAT_PID {
            pmt_pid = ts::parse_pat(packet).or(pmt_pid);
            continue;
        }
        if Some(pid) == pmt_pid {
            if let Some(es) = ts::parse_pmt(packet) {
                let video = es.iter().find(|e| ts::stream_type::is_video(e.stream_type)).map(|e| e.pid);
                let audio = ts::audio_stream(&es).map(|e| e.pid);
                streams = Some((video, audio));
            }
            continue;
        }
        let Some((video, audio)) = streams else { continue };
        if audio.is_none() {
            return Some(0);
        }
        if !ts::unit_start(packet) {
            continue;
        }
        if Some(pid) == video {
            let dts = ts::payload(packet).and_then(ts::parse_pes_header).and_then(|h| h.dts);
            if let Some(dts) = dts.map(|dts| unwrapper.unwrap(dts)) {
                first_dts.get_or_insert(dts);
                last_dts = Some(dts);
            }
        } else if Some(pid) == audio {
            audio_starts += 1;
            // The second start closes the first whole PES packet (the chunk may begin inside one).
            if audio_starts == 2 {
                return Some(last_dts.zip(first_dts).map_or(0, |(last, first)| last.saturating_sub(first)));
            }
        }
    }
    None
}

/// The decode-time step between the first two video frames of `data`, in 90 kHz ticks: one frame of the
/// source. `None` until two frames are in.
pub fn first_frame_step(data: &[u8]) -> Option<u64> {
    let mut pmt_pid = None;
    let mut video = None;
    let mut first = None;
    let mut unwrapper = ts::Unwrapper::default();
    for packet in data.chunks_exact(ts::PACKET_SIZE).filter(|p| p[0] == ts::SYNC) {
        let pid = ts::pid(packet);
        if pid == ts::PAT_PID {
            pmt_pid = ts::parse_pat(packet).or(pmt_pid);
        } else if Some(pid) == pmt_pid {
            if let Some(es) = ts::parse_pmt(packet) {
                video = es.iter().find(|e| ts::stream_type::is_video(e.stream_type)).map(|e| e.pid).or(video);
            }
        } else if Some(pid) == video && ts::unit_start(packet) {
            let Some(dts) = ts::payload(packet).and_then(ts::parse_pes_header).and_then(|h| h.dts) else { continue };
            let dts = unwrapper.unwrap(dts);
            match first {
                None => first = Some(dts),
                Some(first) if dts > first && dts - first < 90_000 => return Some(dts - first),
                Some(_) => return None,
            }
        }
    }
    None
}
