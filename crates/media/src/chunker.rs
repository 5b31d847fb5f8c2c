//! Cuts an MPEG-TS byte stream into self-contained chunks.
//!
//! A chunk starts at the first H.264 IDR at or after the target duration, so a GOP longer than the target
//! gives a longer chunk, never a chunk without an IDR at its start. Every chunk begins with the latest PAT and
//! PMT followed by the packets of that IDR; packets are otherwise copied unchanged, in order, except that the
//! continuity counters of the PSI PIDs are renumbered within the chunk so the repeated tables stay valid.
//! Durations are differences of unwrapped 90 kHz video PTS: exact, and continuous from one chunk to the next.

use std::collections::HashMap;

use crate::{
    aac,
    h264::{self, Sps},
    ts::{self, stream_type, Unwrapper, PACKET_SIZE, PAT_PID, SYNC},
    MediaError, CLOCK,
};

/// A jump of the video PTS larger than this (or backwards by more than a second) is a discontinuity.
const MAX_PTS_STEP: u64 = 10 * CLOCK;
/// An IDR this close before the target still ends the chunk: frame rates like 29.97 do not land exactly.
const TARGET_TOLERANCE: u64 = CLOCK / 100;
/// A video access unit whose first slice is not found within this many bytes is treated as not an IDR.
const MAX_FRAME_HEADER: usize = 512 * 1024;
/// Bytes without any sync pattern, or without a program, before the stream is refused.
const MAX_GARBAGE: usize = 1 << 20;
const MAX_WITHOUT_PROGRAM: u64 = 8 << 20;
/// A chunk longer than this, in 90 kHz ticks or bytes, means the source sends keyframes far too rarely (or never
/// again): the stream is refused rather than buffered without bound.
const MAX_CHUNK_TICKS: u64 = 60 * CLOCK;
const MAX_CHUNK_BYTES: usize = 128 << 20;

/// Everything the chunker knows at the start of a video access unit, before reading it: feeding a
/// [`Chunker::resume`]d chunker the input from [`Resume::input_offset`] on cuts exactly the chunks the original
/// would have cut from there. The segmenter checkpoints the one of each chunk's first access unit, so a new owner
/// of a stream re-cuts the chunk in progress byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// Input offset of the access unit's first packet.
    pub input_offset: u64,
    pub pat: Option<Vec<u8>>,
    pub pmt_pid: Option<u16>,
    pub pmt: Option<Vec<u8>>,
    pub video_pid: Option<u16>,
    pub audio_pid: Option<u16>,
    pub audio_codecs: Option<String>,
    pub sps: Option<Sps>,
    pub pts_last: Option<u64>,
    pub dts_last: Option<u64>,
    pub last_pts: Option<u64>,
    pub last_dts: Option<u64>,
    pub frame_duration: u64,
    pub discontinuity_next: bool,
    /// Last continuity counter per elementary-stream PID.
    pub continuity: Vec<(u16, u8)>,
}

/// A chunk that has just begun: its first access unit (an IDR) is in, the rest is still to come. Announced
/// at once so that transcoding can start with the chunk's first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The chunker's state at the chunk's first byte: a chunker resumed from it, fed the input from
    /// `resume.input_offset` on, cuts this chunk and the ones after it exactly as this one does.
    pub resume: Resume,
    /// Unwrapped PTS of the IDR the chunk starts with.
    pub first_pts: u64,
    pub discontinuity: bool,
    pub width: u32,
    pub height: u32,
    /// One video frame, in 90 kHz ticks, from the latest DTS step.
    pub frame_duration: u64,
}

/// One finished chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Unwrapped PTS of the IDR the chunk starts with.
    pub first_pts: u64,
    /// 90 kHz ticks until the next chunk's first PTS.
    pub duration: u64,
    /// A timestamp jump or a signalled discontinuity precedes this chunk.
    pub discontinuity: bool,
    /// Every input byte before this offset is in this chunk or an earlier one (or was dropped).
    pub input_end: u64,
    /// Where the next chunk starts: `None` for the last chunk of a stream.
    pub next: Option<Resume>,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codecs of the chunk, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// One video frame, in 90 kHz ticks, from the latest DTS step.
    pub frame_duration: u64,
}

struct Building {
    data: Vec<u8>,
    first_pts: u64,
    max_pts: u64,
    /// `max_pts` before the last video access unit was added.
    max_pts_before_last: u64,
    discontinuity: bool,
    /// Next continuity counter of PID 0 and of the PMT PID.
    psi_cc: [u8; 2],
    /// Per PID, the PES packet still being written: where its TS packets are in `data`, and whether its
    /// length says it is complete. At the end of a stream an unfinished PES is cut off rather than kept
    /// truncated, which decoders would report as corrupt.
    open_pes: HashMap<u16, OpenPes>,
}

struct OpenPes {
    packets: Vec<usize>,
    /// 6 + PES_packet_length, when the header gives a length (audio does; video usually leaves it 0).
    expected: Option<usize>,
    received: usize,
}

impl OpenPes {
    fn complete(&self) -> bool {
        self.expected.is_some_and(|expected| self.received >= expected)
    }
}

struct Frame {
    packets: Vec<u8>,
    start_offset: u64,
    pts: Option<u64>,
    es: Vec<u8>,
    is_idr: Option<bool>,
    /// The chunker's state before this access unit's first packet.
    resume: Resume,
}

pub struct Chunker {
    target: u64,
    buffer: Vec<u8>,
    /// Input offset of `buffer[0]`.
    buffer_offset: u64,
    garbage: usize,
    pat: Option<Vec<u8>>,
    pmt_pid: Option<u16>,
    pmt: Option<Vec<u8>>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    audio_codecs: Option<String>,
    sps: Option<Sps>,
    current: Option<Building>,
    frame: Option<Frame>,
    unwrapper: Unwrapper,
    dts_unwrapper: Unwrapper,
    last_pts: Option<u64>,
    last_dts: Option<u64>,
    frame_duration: u64,
    discontinuity_next: bool,
    failed: Option<MediaError>,
    /// Video access units dropped because no chunk had started yet.
    dropped_frames: u64,
    /// Last continuity counter seen per elementary-stream PID.
    continuity: HashMap<u16, u8>,
    /// Chunks begun since [`Chunker::take_started`] was last called.
    started: Vec<Started>,
}

impl Chunker {
    /// `target` is the target chunk duration in 90 kHz ticks.
    pub fn new(target: u64) -> Chunker {
        Chunker {
            target,
            buffer: Vec::new(),
            buffer_offset: 0,
            garbage: 0,
            pat: None,
            pmt_pid: None,
            pmt: None,
            video_pid: None,
            audio_pid: None,
            audio_codecs: None,
            sps: None,
            current: None,
            frame: None,
            unwrapper: Unwrapper::default(),
            dts_unwrapper: Unwrapper::default(),
            last_pts: None,
            last_dts: None,
            frame_duration: CLOCK / 30,
            // The first chunk of a publish session follows whatever came before under the stream name.
            discontinuity_next: true,
            failed: None,
            dropped_frames: 0,
            continuity: HashMap::new(),
            started: Vec::new(),
        }
    }

    /// A chunker that continues from `resume`: the caller feeds it the input from `resume.input_offset` on.
    pub fn resume(target: u64, resume: Resume) -> Chunker {
        let mut chunker = Chunker::new(target);
        chunker.buffer_offset = resume.input_offset;
        chunker.pat = resume.pat;
        chunker.pmt_pid = resume.pmt_pid;
        chunker.pmt = resume.pmt;
        chunker.video_pid = resume.video_pid;
        chunker.audio_pid = resume.audio_pid;
        chunker.audio_codecs = resume.audio_codecs;
        chunker.sps = resume.sps;
        chunker.unwrapper = Unwrapper::resume(resume.pts_last);
        chunker.dts_unwrapper = Unwrapper::resume(resume.dts_last);
        chunker.last_pts = resume.last_pts;
        chunker.last_dts = resume.last_dts;
        chunker.frame_duration = resume.frame_duration;
        chunker.discontinuity_next = resume.discontinuity_next;
        chunker.continuity = resume.continuity.into_iter().collect();
        chunker
    }

    fn snapshot(&self, input_offset: u64) -> Resume {
        let mut continuity: Vec<(u16, u8)> = self.continuity.iter().map(|(pid, cc)| (*pid, *cc)).collect();
        continuity.sort_unstable();
        Resume {
            input_offset,
            pat: self.pat.clone(),
            pmt_pid: self.pmt_pid,
            pmt: self.pmt.clone(),
            video_pid: self.video_pid,
            audio_pid: self.audio_pid,
            audio_codecs: self.audio_codecs.clone(),
            sps: self.sps.clone(),
            pts_last: self.unwrapper.last(),
            dts_last: self.dts_unwrapper.last(),
            last_pts: self.last_pts,
            last_dts: self.last_dts,
            frame_duration: self.frame_duration,
            discontinuity_next: self.discontinuity_next,
            continuity,
        }
    }

    /// Why no chunk has come out of the input so far, if none has: the error a stream that ends now gets.
    pub fn diagnose(&self) -> Option<MediaError> {
        if let Some(error) = &self.failed {
            return Some(error.clone());
        }
        if self.current.is_some() {
            return None;
        }
        let seen = self.input_offset() as usize;
        Some(match self.video_pid {
            None if self.garbage > seen / 2 => MediaError::NotTransportStream(self.garbage),
            None => MediaError::NoProgram(seen),
            Some(_) => MediaError::NoKeyframe(seen),
        })
    }

    /// Video access units that came before the first IDR and were dropped.
    pub fn dropped_before_first_idr(&self) -> u64 {
        self.dropped_frames
    }

    /// Input bytes consumed so far.
    pub fn input_offset(&self) -> u64 {
        self.buffer_offset + self.buffer.len() as u64
    }

    /// The chunks begun since the last call, oldest first (a chunk that also ended in the same
    /// [`Chunker::push`] is among them).
    pub fn take_started(&mut self) -> Vec<Started> {
        std::mem::take(&mut self.started)
    }

    /// The bytes of the chunk being built, so far. They only grow until the chunk is finished: the finished
    /// chunk's data starts with them, except that [`Chunker::finish`] drops the packets of a PES packet the
    /// stream ended in the middle of (see [`Chunker::settled`]).
    pub fn growing(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |current| &current.data)
    }

    /// The start of [`Chunker::growing`] that the finished chunk holds whatever comes next, even the end of the
    /// stream: up to the first packet of a PES packet not known to be complete (the video frame being written,
    /// an audio packet not all in yet), which [`Chunker::finish`] would drop.
    pub fn settled(&self) -> &[u8] {
        let Some(current) = self.current.as_ref() else { return &[] };
        let open = current.open_pes.values().filter(|pes| !pes.complete()).filter_map(|pes| pes.packets.first());
        &current.data[..open.copied().min().unwrap_or(current.data.len())]
    }

    /// Feeds bytes; returns the chunks they completed. After an error the chunker refuses further input.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>, MediaError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.buffer.extend_from_slice(bytes);
        let mut chunks = Vec::new();
        let mut pos = 0;
        while pos + PACKET_SIZE <= self.buffer.len() {
            if self.buffer[pos] != SYNC || !self.synced_at(pos) {
                pos += 1;
                self.garbage += 1;
                continue;
            }
            let packet: [u8; PACKET_SIZE] = match self.buffer[pos..pos + PACKET_SIZE].try_into() {
                Ok(packet) => packet,
                Err(_) => break,
            };
            let offset = self.buffer_offset + pos as u64;
            pos += PACKET_SIZE;
            if let Err(error) = self.packet(&packet, offset, &mut chunks) {
                self.failed = Some(error.clone());
                return Err(error);
            }
        }
        self.buffer.drain(..pos);
        self.buffer_offset += pos as u64;
        if self.garbage > MAX_GARBAGE && self.video_pid.is_none() {
            let error = MediaError::NotTransportStream(self.garbage);
            self.failed = Some(error.clone());
            return Err(error);
        }
        if self.input_offset() > MAX_WITHOUT_PROGRAM && self.current.is_none() {
            let seen = self.input_offset() as usize;
            let error =
                if self.video_pid.is_some() { MediaError::NoKeyframe(seen) } else { MediaError::NoProgram(seen) };
            self.failed = Some(error.clone());
            return Err(error);
        }
        if let Some(current) = &self.current {
            let ticks = current.max_pts.saturating_sub(current.first_pts);
            if ticks > MAX_CHUNK_TICKS || current.data.len() > MAX_CHUNK_BYTES {
                let error = MediaError::KeyframeInterval { seconds: ticks / CLOCK, bytes: current.data.len() };
                self.failed = Some(error.clone());
                return Err(error);
            }
        }
        Ok(chunks)
    }

    /// Ends the stream: returns the last chunk, its duration extended by one frame past its last PTS.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.failed.is_some() {
            return None;
        }
        if let Some(mut frame) = self.frame.take() {
            frame.is_idr = Some(false);
            self.append_frame(frame);
        }
        let end = self.input_offset();
        let mut current = self.current.take()?;
        // The stream stopped, perhaps mid-packet: SRT callers in live mode drop what is unsent when they
        // close. A PES that is not known to be complete is cut off, including the last video access unit.
        let unfinished: Vec<usize> = current
            .open_pes
            .values()
            .filter(|pes| !pes.complete())
            .flat_map(|pes| pes.packets.iter().copied())
            .collect();
        if self.video_pid.is_some_and(|pid| current.open_pes.get(&pid).is_some_and(|pes| !pes.complete())) {
            current.max_pts = current.max_pts_before_last;
        }
        if !unfinished.is_empty() {
            let mut data = Vec::with_capacity(current.data.len());
            for (i, packet) in current.data.chunks_exact(PACKET_SIZE).enumerate() {
                if !unfinished.contains(&(i * PACKET_SIZE)) {
                    data.extend_from_slice(packet);
                }
            }
            current.data = data;
        }
        let duration = current.max_pts + self.frame_duration - current.first_pts;
        Some(self.finish_chunk(current, duration, end, None))
    }

    /// A sync byte is trusted when the next packet (if buffered) starts with one too.
    fn synced_at(&self, pos: usize) -> bool {
        self.buffer.get(pos + PACKET_SIZE).is_none_or(|b| *b == SYNC)
    }

    fn packet(&mut self, packet: &[u8; PACKET_SIZE], offset: u64, chunks: &mut Vec<Chunk>) -> Result<(), MediaError> {
        let pid = ts::pid(packet);
        // Taken before the packet changes anything: a chunk that starts with this access unit resumes from here.
        let resume = (Some(pid) == self.video_pid && ts::unit_start(packet)).then(|| self.snapshot(offset));
        if pid == PAT_PID {
            if let Some(pmt_pid) = ts::parse_pat(packet) {
                self.pmt_pid = Some(pmt_pid);
                self.pat = Some(packet.to_vec());
            }
        } else if Some(pid) == self.pmt_pid {
            if let Some(streams) = ts::parse_pmt(packet) {
                self.program(&streams)?;
                self.pmt = Some(packet.to_vec());
            }
        }

        if Some(pid) == self.video_pid || Some(pid) == self.audio_pid {
            self.check_continuity(pid, packet);
        }

        if Some(pid) == self.video_pid && ts::unit_start(packet) {
            if let Some(mut frame) = self.frame.take() {
                // The previous access unit ended without a slice we could see.
                frame.is_idr = Some(false);
                self.decide(frame, chunks);
            }
            if let Some(resume) = resume {
                self.start_frame(packet, offset, resume);
            }
        } else if let Some(frame) = self.frame.as_mut() {
            frame.packets.extend_from_slice(packet);
            if Some(pid) == self.video_pid {
                if let Some(payload) = ts::payload(packet) {
                    frame.es.extend_from_slice(payload);
                }
            }
        } else if let Some(current) = self.current.as_mut() {
            write_packet(current, packet, self.pmt_pid);
        }

        if Some(pid) == self.audio_pid && self.audio_codecs.is_none() && ts::unit_start(packet) {
            if let Some(payload) = ts::payload(packet) {
                if let Some(header) = ts::parse_pes_header(payload) {
                    self.audio_codecs = aac::adts_codecs(&payload[header.data_offset..]);
                }
            }
        }

        if let Some(frame) = self.frame.as_ref().filter(|f| f.is_idr.is_none()) {
            if let Some((is_idr, sps)) = scan_frame(&frame.es) {
                if sps.is_some() {
                    self.sps = sps;
                }
                if let Some(mut frame) = self.frame.take() {
                    frame.is_idr = Some(is_idr);
                    self.decide(frame, chunks);
                }
            }
        }
        Ok(())
    }

    /// A continuity counter that skips means packets were lost: the next chunk is flagged. A repeated
    /// counter is a legal duplicate packet; packets without payload do not advance it.
    fn check_continuity(&mut self, pid: u16, packet: &[u8]) {
        let cc = ts::continuity_counter(packet);
        if ts::payload(packet).is_none() {
            return;
        }
        if let Some(last) = self.continuity.insert(pid, cc) {
            if cc != last && cc != (last + 1) & 0x0f && !ts::discontinuity_indicator(packet) {
                self.discontinuity_next = true;
            }
        }
    }

    fn program(&mut self, streams: &[ts::EsInfo]) -> Result<(), MediaError> {
        let video = streams.iter().find(|es| stream_type::is_video(es.stream_type));
        let Some(video) = video else {
            let listed: Vec<String> = streams.iter().map(|es| stream_type::name(es.stream_type)).collect();
            return Err(MediaError::NoVideo(if listed.is_empty() { "nothing".into() } else { listed.join(", ") }));
        };
        if video.stream_type != stream_type::H264 {
            return Err(MediaError::UnsupportedVideo(stream_type::name(video.stream_type)));
        }
        if self.video_pid != Some(video.pid) {
            self.video_pid = Some(video.pid);
        }
        self.audio_pid = ts::audio_stream(streams).map(|es| es.pid);
        Ok(())
    }

    fn start_frame(&mut self, packet: &[u8; PACKET_SIZE], offset: u64, resume: Resume) {
        let payload = ts::payload(packet).unwrap_or_default();
        let header = ts::parse_pes_header(payload);
        let pts = header.and_then(|h| h.pts).map(|pts| self.unwrapper.unwrap(pts));
        if ts::discontinuity_indicator(packet) {
            self.discontinuity_next = true;
        }
        if let (Some(pts), Some(last)) = (pts, self.last_pts) {
            if pts > last + MAX_PTS_STEP || pts + CLOCK < last {
                self.discontinuity_next = true;
            }
        }
        if let Some(dts) = header.and_then(|h| h.dts).map(|dts| self.dts_unwrapper.unwrap(dts)) {
            if let Some(step) = self.last_dts.and_then(|last| dts.checked_sub(last)).filter(|s| *s > 0 && *s < CLOCK) {
                self.frame_duration = step;
            }
            self.last_dts = Some(dts);
        }
        if pts.is_some() {
            self.last_pts = pts;
        }
        let es = header.map(|h| payload[h.data_offset..].to_vec()).unwrap_or_default();
        self.frame = Some(Frame { packets: packet.to_vec(), start_offset: offset, pts, es, is_idr: None, resume });
    }

    fn decide(&mut self, frame: Frame, chunks: &mut Vec<Chunk>) {
        let idr_pts = frame.pts.filter(|_| frame.is_idr == Some(true));
        let Some(pts) = idr_pts else {
            self.append_frame(frame);
            return;
        };
        let cut = match &self.current {
            None => true,
            Some(current) => self.discontinuity_next || pts + TARGET_TOLERANCE >= current.first_pts + self.target,
        };
        if !cut {
            self.append_frame(frame);
            return;
        }
        if let Some(current) = self.current.take() {
            let duration = if self.discontinuity_next {
                current.max_pts + self.frame_duration - current.first_pts
            } else {
                pts - current.first_pts
            };
            chunks.push(self.finish_chunk(current, duration, frame.start_offset, Some(frame.resume.clone())));
        }
        if self.discontinuity_next {
            // Counters restart with whatever caused the discontinuity: judge continuity afresh from here, or
            // the other PIDs' restarts would flag the chunk after this one too.
            self.continuity.clear();
        }
        let mut building = Building {
            data: Vec::with_capacity(4 << 20),
            first_pts: pts,
            max_pts: pts,
            max_pts_before_last: pts,
            discontinuity: std::mem::take(&mut self.discontinuity_next),
            psi_cc: [0, 0],
            open_pes: HashMap::new(),
        };
        for table in [&self.pat, &self.pmt].into_iter().flatten() {
            write_packet(&mut building, table, self.pmt_pid);
        }
        let (width, height) = self.sps.as_ref().map_or((0, 0), |sps| (sps.width, sps.height));
        self.started.push(Started {
            resume: frame.resume.clone(),
            first_pts: pts,
            discontinuity: building.discontinuity,
            width,
            height,
            frame_duration: self.frame_duration,
        });
        self.current = Some(building);
        self.append_frame(frame);
    }

    fn append_frame(&mut self, frame: Frame) {
        let Some(current) = self.current.as_mut() else {
            self.dropped_frames += 1; // nothing is kept before the first IDR
            return;
        };
        current.max_pts_before_last = current.max_pts;
        if let Some(pts) = frame.pts {
            if !self.discontinuity_next {
                current.max_pts = current.max_pts.max(pts);
            }
        }
        for packet in frame.packets.chunks_exact(PACKET_SIZE) {
            write_packet(current, packet, self.pmt_pid);
        }
    }

    fn finish_chunk(&self, current: Building, duration: u64, input_end: u64, next: Option<Resume>) -> Chunk {
        let (width, height) = self.sps.as_ref().map_or((0, 0), |sps| (sps.width, sps.height));
        let mut codecs = self.sps.as_ref().map(Sps::codecs).unwrap_or_else(|| "avc1.640028".into());
        if let Some(audio) = &self.audio_codecs {
            codecs = format!("{codecs},{audio}");
        }
        Chunk {
            data: current.data,
            first_pts: current.first_pts,
            duration,
            discontinuity: current.discontinuity,
            input_end,
            next,
            width,
            height,
            codecs,
            frame_duration: self.frame_duration,
        }
    }
}

/// Copies a packet into the chunk, renumbering the continuity counter of PAT and PMT packets and keeping
/// track of the PES packet each elementary-stream packet belongs to.
fn write_packet(current: &mut Building, packet: &[u8], pmt_pid: Option<u16>) {
    let start = current.data.len();
    current.data.extend_from_slice(packet);
    let pid = ts::pid(packet);
    let slot = if pid == PAT_PID {
        0
    } else if Some(pid) == pmt_pid {
        1
    } else {
        track_pes(current, pid, packet, start);
        return;
    };
    let cc = current.psi_cc[slot];
    ts::set_continuity_counter(&mut current.data[start..], cc);
    current.psi_cc[slot] = (cc + 1) & 0x0f;
}

fn track_pes(current: &mut Building, pid: u16, packet: &[u8], offset: usize) {
    let Some(payload) = ts::payload(packet) else {
        return;
    };
    if ts::unit_start(packet) {
        let length = payload.get(4..6).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let pes = OpenPes {
            packets: vec![offset],
            expected: length.filter(|l| *l > 0).map(|l| l + 6),
            received: payload.len(),
        };
        current.open_pes.insert(pid, pes);
    } else if let Some(pes) = current.open_pes.get_mut(&pid) {
        pes.packets.push(offset);
        pes.received += payload.len();
    }
}

/// Looks for the first slice of an access unit: `Some((is_idr, sps))` once found.
fn scan_frame(es: &[u8]) -> Option<(bool, Option<Sps>)> {
    let units = h264::nal_units(es);
    let mut sps = None;
    for (i, unit) in units.iter().enumerate() {
        match h264::nal_type(unit) {
            // An SPS is only complete when another NAL unit follows it.
            Some(h264::NAL_SPS) if i + 1 < units.len() => sps = h264::parse_sps(unit).or(sps),
            Some(h264::NAL_IDR) => return Some((true, sps)),
            Some(h264::NAL_SLICE) => return Some((false, sps)),
            _ => {}
        }
    }
    (es.len() > MAX_FRAME_HEADER).then_some((false, sps))
}
