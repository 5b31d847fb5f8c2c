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
/// A video access unit whose first slice is not found within this many bytes of video is treated as not an IDR.
const MAX_FRAME_HEADER: usize = 512 * 1024;
/// Nor is one whose first slice is not found within this many bytes of the stream (other PIDs' packets
/// included): the packets of an access unit still being judged are held aside, so they need a bound of their own.
const MAX_FRAME_PACKETS: usize = 2 * MAX_FRAME_HEADER;
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
    /// How far [`scan_frame`] got: each byte of `es` is looked at once, however it arrives.
    scan: Scan,
}

/// Where the search for the access unit's first slice stands.
#[derive(Default)]
struct Scan {
    /// Start codes are still to be searched for from this offset of `es` on.
    searched: usize,
    /// Start (after its start code) of the last NAL unit found: not known to be complete yet.
    last_unit: Option<usize>,
    /// The last SPS that parsed, among the complete NAL units so far.
    sps: Option<Sps>,
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
        let duration = current.max_pts.saturating_add(self.frame_duration).saturating_sub(current.first_pts);
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

        if let Some(is_idr) = self.frame.as_mut().and_then(scan_frame) {
            if let Some(mut frame) = self.frame.take() {
                if let Some(sps) = frame.scan.sps.take() {
                    self.sps = Some(sps);
                }
                frame.is_idr = Some(is_idr);
                self.decide(frame, chunks);
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
            if pts > last.saturating_add(MAX_PTS_STEP) || pts.saturating_add(CLOCK) < last {
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
        self.frame = Some(Frame {
            packets: packet.to_vec(),
            start_offset: offset,
            pts,
            es,
            is_idr: None,
            resume,
            scan: Scan::default(),
        });
    }

    fn decide(&mut self, frame: Frame, chunks: &mut Vec<Chunk>) {
        let idr_pts = frame.pts.filter(|_| frame.is_idr == Some(true));
        let Some(pts) = idr_pts else {
            self.append_frame(frame);
            return;
        };
        // A chunk ends at an IDR after the one it starts with, never at one with the same (a duplicated packet)
        // or an earlier PTS, whatever the target: its duration is the difference.
        let cut = match &self.current {
            None => true,
            Some(current) => {
                self.discontinuity_next
                    || (pts > current.first_pts
                        && pts.saturating_add(TARGET_TOLERANCE) >= current.first_pts.saturating_add(self.target))
            }
        };
        if !cut {
            self.append_frame(frame);
            return;
        }
        if let Some(current) = self.current.take() {
            let duration = if self.discontinuity_next {
                current.max_pts.saturating_add(self.frame_duration).saturating_sub(current.first_pts)
            } else {
                pts.saturating_sub(current.first_pts)
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
            expected: length.filter(|l| *l > 0).map(|l| l.saturating_add(6)),
            received: payload.len(),
        };
        current.open_pes.insert(pid, pes);
    } else if let Some(pes) = current.open_pes.get_mut(&pid) {
        pes.packets.push(offset);
        pes.received = pes.received.saturating_add(payload.len());
    }
}

/// Looks for the first slice of an access unit, from where the last look stopped: `Some(is_idr)` once found,
/// or once the unit is too long for its first slice still to come.
fn scan_frame(frame: &mut Frame) -> Option<bool> {
    let es = &frame.es;
    let from = frame.scan.searched;
    let starts: Vec<usize> = h264::nal_starts(&es[from..]).into_iter().map(|start| from + start).collect();
    // A start code may straddle the end: its first two bytes are searched again with what follows.
    frame.scan.searched = es.len().saturating_sub(2).max(starts.last().copied().unwrap_or(from));
    for start in starts {
        // The unit before this one is complete now.
        let Some(unit) = frame.scan.last_unit.replace(start) else { continue };
        let nal = &es[unit..(start - 3).max(unit)];
        match h264::nal_type(nal) {
            Some(h264::NAL_SPS) => frame.scan.sps = h264::parse_sps(nal).or(frame.scan.sps.take()),
            Some(h264::NAL_IDR) => return Some(true),
            Some(h264::NAL_SLICE) => return Some(false),
            _ => {}
        }
    }
    // The last unit's type is known from its first byte, before the unit is complete.
    match frame.scan.last_unit.and_then(|unit| h264::nal_type(&es[unit..])) {
        Some(h264::NAL_IDR) => return Some(true),
        Some(h264::NAL_SLICE) => return Some(false),
        _ => {}
    }
    (es.len() > MAX_FRAME_HEADER || frame.packets.len() > MAX_FRAME_PACKETS).then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u16 = 0x100;
    const AUDIO: u16 = 0x101;
    const PMT: u16 = 0x1000;
    /// x264's SPS of a 1280x720 High profile stream.
    const SPS: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
        0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21, 0x43];
    const SLICE: &[u8] = &[0x41, 0x9a, 0x21, 0x43];

    /// Writes a transport stream: program 1 with H.264 on `VIDEO` and AAC on `AUDIO`.
    #[derive(Default)]
    struct Ts {
        out: Vec<u8>,
        cc: HashMap<u16, u8>,
    }

    impl Ts {
        /// One packet carrying exactly `payload` (at most 184 bytes; an adaptation field stuffs the rest).
        fn packet(&mut self, pid: u16, start: bool, payload: &[u8]) {
            let cc = self.cc.entry(pid).or_default();
            let stuffing = PACKET_SIZE - 4 - payload.len();
            let control = if stuffing > 0 { 0x30 } else { 0x10 };
            self.out.extend_from_slice(&[SYNC, u8::from(start) << 6 | (pid >> 8) as u8, pid as u8, control | *cc]);
            *cc = (*cc + 1) & 0x0f;
            if stuffing > 0 {
                self.out.push((stuffing - 1) as u8);
                if stuffing > 1 {
                    self.out.push(0);
                    self.out.resize(self.out.len() + stuffing - 2, 0xff);
                }
            }
            self.out.extend_from_slice(payload);
        }

        fn psi(&mut self, pid: u16, table: &[u8]) {
            let mut payload = vec![0];
            payload.extend_from_slice(table);
            payload.extend_from_slice(&ts::section_crc(table).to_be_bytes());
            self.packet(pid, true, &payload);
        }

        fn tables(&mut self) {
            self.psi(PAT_PID, &[0x00, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0, 0, 1, 0xe0 | (PMT >> 8) as u8, PMT as u8]);
            let mut pmt = vec![0x02, 0xb0, 0x17, 0, 1, 0xc1, 0, 0, 0xe0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xf0, 0];
            pmt.extend_from_slice(&[stream_type::H264, 0xe0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xf0, 0]);
            pmt.extend_from_slice(&[stream_type::AAC_ADTS, 0xe0 | (AUDIO >> 8) as u8, AUDIO as u8, 0xf0, 0]);
            self.psi(PMT, &pmt);
        }

        /// A PES packet with this PTS, cut into TS packets of `piece` bytes of payload (at most 184).
        fn pes(&mut self, pid: u16, pts: u64, es: &[u8], piece: usize) {
            let stream_id = if pid == VIDEO { 0xe0 } else { 0xc0 };
            let mut data = vec![0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5];
            data.extend_from_slice(&[
                0x21 | ((pts >> 29) as u8 & 0x0e),
                (pts >> 22) as u8,
                ((pts >> 14) as u8) | 1,
                (pts >> 7) as u8,
                ((pts as u8) << 1) | 1,
            ]);
            // The header whole in the first packet, the rest in pieces.
            let first = es.len().min(piece.saturating_sub(data.len()).max(1));
            data.extend_from_slice(&es[..first]);
            self.packet(pid, true, &data);
            for payload in es[first..].chunks(piece) {
                self.packet(pid, false, payload);
            }
        }

        /// A video access unit of these NAL units, each after a 4-byte start code.
        fn frame(&mut self, pts: u64, nals: &[&[u8]]) {
            let es: Vec<u8> = nals.iter().flat_map(|nal| [&[0, 0, 0, 1][..], nal].concat()).collect();
            self.pes(VIDEO, pts, &es, 184);
        }
    }

    fn cut(chunker: &mut Chunker, input: &[u8]) -> Vec<Chunk> {
        let mut chunks = chunker.push(input).expect("the stream is cut");
        chunks.extend(chunker.finish());
        chunks
    }

    /// Regression (fuzz target `chunker`): an IDR packet repeated with the same continuity counter (a legal
    /// duplicate) ended a chunk at the same PTS it started with when the target was under 10 ms: a chunk of
    /// duration 0, and with a PTS stepping back, a subtraction that overflowed. The minimised input was a PAT,
    /// a PMT and one IDR packet twice, with target duration 0.
    #[test]
    fn an_idr_at_the_chunks_first_pts_does_not_end_the_chunk() {
        for target in [0, 1, TARGET_TOLERANCE] {
            let mut ts = Ts::default();
            ts.tables();
            ts.frame(139_170, &[&[0x09, 0xf0], &SPS, IDR]);
            let idr = ts.out[ts.out.len() - PACKET_SIZE..].to_vec();
            ts.out.extend_from_slice(&idr);
            ts.frame(139_170 - 3000, &[IDR]); // backwards, by less than a discontinuity
            ts.frame(139_170 + 3000, &[IDR]);
            let chunks = cut(&mut Chunker::new(target), &ts.out);
            let cuts: Vec<(u64, u64)> = chunks.iter().map(|c| (c.first_pts, c.duration)).collect();
            // The last chunk lasts one frame, 6000 from the last DTS step.
            assert_eq!(cuts, vec![(139_170, 3000), (142_170, 6000)], "target {target}");
        }
    }

    /// The bound: a source that never sends a keyframe is refused with a clear error after 8 MiB, and
    /// nothing of it is held meanwhile (access units before the first IDR are dropped).
    #[test]
    fn a_source_that_never_sends_a_keyframe_is_refused_after_a_bound_holding_nothing() {
        let mut chunker = Chunker::new(2 * CLOCK);
        let mut pts = 0;
        let error = loop {
            let mut ts = Ts::default();
            ts.tables();
            for _ in 0..30 {
                ts.frame(pts, &[SLICE, &[0x01; 700]]);
                pts += 3000;
            }
            match chunker.push(&ts.out) {
                Ok(chunks) => assert!(chunks.is_empty() && chunker.growing().is_empty()),
                Err(error) => break error,
            }
            assert!(
                chunker.buffer.len() < PACKET_SIZE && chunker.frame.as_ref().is_none_or(|f| f.packets.len() < 1024)
            );
        };
        let MediaError::NoKeyframe(seen) = error else { panic!("{error:?}") };
        assert!(seen > MAX_WITHOUT_PROGRAM as usize && seen < MAX_WITHOUT_PROGRAM as usize + 64 * 1024, "{seen}");
        assert!(chunker.dropped_before_first_idr() > 2500);
        assert_eq!(chunker.diagnose(), Some(MediaError::NoKeyframe(seen)));
        assert_eq!(error.to_string(), format!("no H.264 keyframe (IDR) in {seen} bytes of video"));
    }

    /// Regression: the packets of an access unit whose first slice never came were held aside without bound
    /// (only its video bytes were bounded), so a publisher that started a video PES and then sent only audio grew
    /// the segmenter's memory for ever. Now it is judged not an IDR after a bound, and joins the chunk, whose size
    /// is bounded.
    #[test]
    fn an_access_unit_without_a_slice_is_held_aside_only_within_a_bound() {
        let mut ts = Ts::default();
        ts.tables();
        ts.frame(0, &[&SPS, IDR]);
        ts.frame(3000, &[&[0x09, 0xf0], &[0x06, 0x05, 0x10]]); // an AUD and an SEI, and never a slice
        for _ in 0..(MAX_FRAME_PACKETS / PACKET_SIZE + 100) {
            ts.pes(AUDIO, 3000, &[0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x7f, 0xfc], 184);
        }
        let mut chunker = Chunker::new(2 * CLOCK);
        assert!(chunker.push(&ts.out).expect("cut").is_empty());
        assert!(chunker.frame.is_none(), "the access unit was judged");
        assert!(chunker.growing().len() > MAX_FRAME_PACKETS, "and joined the chunk");
    }

    /// The search for the first slice keeps its place between packets: start codes and NAL headers split across
    /// packets, an SPS and a long SEI before the IDR, are found as when they arrive whole.
    #[test]
    fn the_first_slice_is_found_however_the_video_arrives() {
        let sei = [&[0x06][..], &[0x05; 3000]].concat();
        let mut whole = Ts::default();
        whole.tables();
        let mut split = Ts::default();
        split.tables();
        for (i, pts) in [0, 3000, 6000, 2 * CLOCK, 2 * CLOCK + 3000].into_iter().enumerate() {
            let nals: [&[u8]; 4] = [&[0x09, 0xf0], &SPS, &sei, if i % 3 == 0 { IDR } else { SLICE }];
            whole.frame(pts, &nals);
            let es: Vec<u8> = nals.iter().flat_map(|nal| [&[0, 0, 0, 1][..], nal].concat()).collect();
            // 7 bytes of payload per packet: every start code and header lands across packets somewhere.
            split.pes(VIDEO, pts, &es, 7);
        }
        let whole = cut(&mut Chunker::new(2 * CLOCK), &whole.out);
        let split = cut(&mut Chunker::new(2 * CLOCK), &split.out);
        for chunks in [&whole, &split] {
            let summary: Vec<_> = chunks.iter().map(|c| (c.first_pts, c.duration, c.width, c.height)).collect();
            assert_eq!(summary, vec![(0, 2 * CLOCK, 1280, 720), (2 * CLOCK, 3000, 1280, 720)]);
            assert_eq!(chunks[0].codecs, "avc1.64001f");
        }
    }
}
