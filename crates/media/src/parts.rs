//! Cuts one encoded rendition chunk into LL-HLS partial segments as the encoder writes it.
//!
//! The input is the MPEG-TS that ffmpeg writes for one rendition of one chunk, read as it arrives. The output is
//! a run of parts whose concatenation is the finished segment, byte for byte, so players without LL-HLS see the
//! segment they always did and LL-HLS players get its first half second before the rest exists:
//! - a part ends at a video frame boundary, before the first frame that would make it longer than the part
//!   target (its duration is a whole number of frames, at most the target: RFC 8216bis 4.4.4.9 forbids a part
//!   longer than PART-TARGET);
//! - every part starts with the latest PAT and PMT (players such as hls.js reset their TS demuxer per part), and
//!   the continuity counters of those two PIDs are renumbered over the whole segment so the repeated tables
//!   stay valid;
//! - the first part holds the chunk's IDR: it is the one independent part;
//! - part boundaries depend only on the frames' decode timestamps, so encoding the same chunk again cuts the
//!   same parts (a worker that replaces a dead one writes the same keys).
//!
//! Optionally the first audio PES is dropped (an AAC encoder's priming frame, see [`crate::ts::drop_first_audio_pes`]).

use crate::ts::{self, stream_type, Unwrapper, PACKET_SIZE, PAT_PID, SYNC};

/// One partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 0 for the first part of the chunk.
    pub index: u32,
    pub data: Vec<u8>,
    /// Decode timestamp (unwrapped) of the part's first video frame.
    pub first_dts: u64,
    /// 90 kHz ticks: up to the next part's first frame, or for the last part to the end of the chunk.
    pub duration: u64,
    /// Holds the chunk's IDR (the first part).
    pub independent: bool,
    /// The chunk's last part.
    pub last: bool,
}

/// Audio PES dropping, when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropAudio {
    No,
    /// Before the first audio PES.
    Waiting,
    /// Inside it: packets skipped so far (with payload), to renumber the rest.
    Dropping(u8),
    Done(u8),
}

pub struct PartCutter {
    target: u64,
    /// One video frame in 90 kHz ticks: from the decode timestamps once two frames are seen, else the hint.
    frame_step: u64,
    pending: Vec<u8>,
    pat: Option<[u8; PACKET_SIZE]>,
    pmt_pid: Option<u16>,
    pmt: Option<[u8; PACKET_SIZE]>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    /// Next continuity counter of PID 0 and of the PMT PID over the whole segment.
    psi_cc: [u8; 2],
    current: Vec<u8>,
    current_first_dts: Option<u64>,
    next_index: u32,
    /// Decode timestamp of the first frame of the first part.
    chunk_first_dts: Option<u64>,
    last_dts: Option<u64>,
    unwrapper: Unwrapper,
    drop_audio: DropAudio,
}

impl PartCutter {
    /// `target` is the part target duration and `frame_hint` the rendition's frame duration (used until the
    /// output shows its own), both in 90 kHz ticks.
    pub fn new(target: u64, frame_hint: u64, drop_first_audio_pes: bool) -> PartCutter {
        PartCutter {
            target: target.max(1),
            frame_step: frame_hint,
            pending: Vec::new(),
            pat: None,
            pmt_pid: None,
            pmt: None,
            video_pid: None,
            audio_pid: None,
            psi_cc: [0, 0],
            current: Vec::new(),
            current_first_dts: None,
            next_index: 0,
            chunk_first_dts: None,
            last_dts: None,
            unwrapper: Unwrapper::default(),
            drop_audio: if drop_first_audio_pes { DropAudio::Waiting } else { DropAudio::No },
        }
    }

    /// Feeds encoder output; returns the parts completed by it, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Part> {
        self.pending.extend_from_slice(bytes);
        let mut parts = Vec::new();
        let mut pos = 0;
        while pos + PACKET_SIZE <= self.pending.len() {
            if self.pending[pos] != SYNC {
                // ffmpeg writes whole packets; a lost sync byte is skipped up to the next one.
                pos += 1;
                continue;
            }
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&self.pending[pos..pos + PACKET_SIZE]);
            pos += PACKET_SIZE;
            self.packet(packet, &mut parts);
        }
        self.pending.drain(..pos);
        parts
    }

    /// The last part, once the encoder has written everything. `duration` is the whole chunk's (the source
    /// chunk's): the last part lasts what the earlier ones leave of it. `None` if no video frame came at all.
    pub fn finish(&mut self, duration: u64) -> Option<Part> {
        let first = self.current_first_dts?;
        let chunk_first = self.chunk_first_dts.unwrap_or(first);
        let elapsed = first.saturating_sub(chunk_first);
        let last = duration.checked_sub(elapsed).filter(|d| *d > 0).unwrap_or(self.frame_step.max(1));
        Some(self.close(last, true))
    }

    /// Parts cut so far.
    pub fn parts(&self) -> u32 {
        self.next_index
    }

    fn packet(&mut self, mut packet: [u8; PACKET_SIZE], parts: &mut Vec<Part>) {
        let pid = ts::pid(&packet);
        if pid == PAT_PID {
            if let Some(pmt_pid) = ts::parse_pat(&packet) {
                self.pmt_pid = Some(pmt_pid);
                self.pat = Some(packet);
            }
            self.write_psi(packet, 0);
            return;
        }
        if Some(pid) == self.pmt_pid {
            if let Some(streams) = ts::parse_pmt(&packet) {
                self.video_pid = streams.iter().find(|es| stream_type::is_video(es.stream_type)).map(|es| es.pid);
                self.audio_pid = ts::audio_stream(&streams).map(|es| es.pid);
                self.pmt = Some(packet);
            }
            self.write_psi(packet, 1);
            return;
        }
        if Some(pid) == self.audio_pid && !self.keep_audio(&mut packet) {
            return;
        }
        if Some(pid) == self.video_pid && ts::unit_start(&packet) {
            let dts = ts::payload(&packet)
                .and_then(ts::parse_pes_header)
                .and_then(|h| h.dts)
                .map(|dts| self.unwrapper.unwrap(dts));
            if let Some(dts) = dts {
                self.frame(dts, parts);
            }
        }
        self.current.extend_from_slice(&packet);
    }

    /// A video frame with decode timestamp `dts` starts: it may begin a new part.
    fn frame(&mut self, dts: u64, parts: &mut Vec<Part>) {
        if let Some(step) = self.last_dts.and_then(|last| dts.checked_sub(last)).filter(|s| *s > 0 && *s < 90_000) {
            self.frame_step = step;
        }
        self.last_dts = Some(dts);
        match self.current_first_dts {
            None => {
                self.current_first_dts = Some(dts);
                self.chunk_first_dts.get_or_insert(dts);
            }
            // A part ends before a frame that decodes after its first one, never before a repeated or an earlier
            // DTS, whatever the frame step: its duration is the difference.
            Some(first)
                if dts > first && dts.saturating_add(self.frame_step.max(1)) > first.saturating_add(self.target) =>
            {
                parts.push(self.close(dts - first, false));
                self.current_first_dts = Some(dts);
                // The new part starts with the tables, so a player can start decoding at it.
                if let (Some(pat), Some(pmt)) = (self.pat, self.pmt) {
                    self.write_psi(pat, 0);
                    self.write_psi(pmt, 1);
                }
            }
            Some(_) => {}
        }
    }

    fn close(&mut self, duration: u64, last: bool) -> Part {
        let index = self.next_index;
        self.next_index += 1;
        Part {
            index,
            data: std::mem::take(&mut self.current),
            first_dts: self.current_first_dts.take().unwrap_or_default(),
            duration,
            independent: index == 0,
            last,
        }
    }

    fn write_psi(&mut self, mut packet: [u8; PACKET_SIZE], slot: usize) {
        ts::set_continuity_counter(&mut packet, self.psi_cc[slot]);
        self.psi_cc[slot] = (self.psi_cc[slot] + 1) & 0x0f;
        self.current.extend_from_slice(&packet);
    }

    /// Whether an audio packet is kept, renumbering its continuity counter past a dropped first PES.
    fn keep_audio(&mut self, packet: &mut [u8; PACKET_SIZE]) -> bool {
        let start = ts::unit_start(packet);
        let counted = u8::from(ts::payload(packet).is_some());
        self.drop_audio = match self.drop_audio {
            DropAudio::No => return true,
            DropAudio::Waiting if start => DropAudio::Dropping(counted),
            DropAudio::Waiting => return true,
            DropAudio::Dropping(removed) if start => DropAudio::Done(removed),
            DropAudio::Dropping(removed) => DropAudio::Dropping(removed.wrapping_add(counted)),
            done @ DropAudio::Done(_) => done,
        };
        match self.drop_audio {
            DropAudio::Done(removed) => {
                let cc = ts::continuity_counter(packet).wrapping_sub(removed) & 0x0f;
                ts::set_continuity_counter(packet, cc);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u16 = 0x100;
    const AUDIO: u16 = 0x101;
    const PMT: u16 = 0x1000;

    fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0xff; PACKET_SIZE];
        p[0] = SYNC;
        p[1] = (u8::from(start) << 6) | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | (cc & 0x0f);
        p[4..4 + payload.len()].copy_from_slice(payload);
        p
    }

    /// A PSI packet of `table` (its last 4 bytes, the CRC, filled in).
    fn psi(pid: u16, table: &[u8]) -> Vec<u8> {
        let mut payload = vec![0];
        let body = &table[..table.len() - 4];
        payload.extend_from_slice(body);
        payload.extend_from_slice(&ts::section_crc(body).to_be_bytes());
        packet(pid, true, 0, &payload)
    }

    fn pat() -> Vec<u8> {
        // table 0, length 13: ts id, version, section numbers, program 1 -> PMT, CRC.
        psi(PAT_PID, &[0x00, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0, 0, 1, 0xe0 | (PMT >> 8) as u8, PMT as u8, 0, 0, 0, 0])
    }

    fn pmt() -> Vec<u8> {
        let mut t = vec![0x02, 0xb0, 0x17, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00];
        t.extend_from_slice(&[stream_type::H264, 0xe0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xf0, 0]);
        t.extend_from_slice(&[stream_type::AAC_ADTS, 0xe0 | (AUDIO >> 8) as u8, AUDIO as u8, 0xf0, 0]);
        t.extend_from_slice(&[0, 0, 0, 0]);
        psi(PMT, &t)
    }

    fn timestamp(prefix: u8, value: u64) -> [u8; 5] {
        [
            (prefix << 4) | (((value >> 30) as u8 & 0x07) << 1) | 1,
            (value >> 22) as u8,
            (((value >> 15) as u8) << 1) | 1,
            (value >> 7) as u8,
            ((value as u8) << 1) | 1,
        ]
    }

    fn pes(pid: u16, cc: u8, dts: u64) -> Vec<u8> {
        let mut payload = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        payload.extend_from_slice(&timestamp(3, dts + 7200));
        payload.extend_from_slice(&timestamp(1, dts));
        packet(pid, true, cc, &payload)
    }

    /// A chunk of `frames` video frames at 25 fps (one packet each plus one continuation), audio every 4th.
    fn chunk(frames: u64) -> Vec<u8> {
        let mut out = [pat(), pmt()].concat();
        let (mut vcc, mut acc) = (0u8, 0u8);
        for i in 0..frames {
            out.extend(pes(VIDEO, vcc, 900_000 + i * 3600));
            out.extend(packet(VIDEO, false, vcc + 1, &[0; 8]));
            vcc = (vcc + 2) & 0x0f;
            if i % 4 == 0 {
                out.extend(pes(AUDIO, acc, 900_000 + i * 3600));
                out.extend(packet(AUDIO, false, acc + 1, &[0; 8]));
                acc = (acc + 2) & 0x0f;
            }
        }
        out
    }

    fn cut(input: &[u8], piece: usize, drop_audio: bool) -> Vec<Part> {
        let mut cutter = PartCutter::new(45_000, 3600, drop_audio);
        let mut parts: Vec<Part> = input.chunks(piece).flat_map(|bytes| cutter.push(bytes)).collect();
        parts.extend(cutter.finish(50 * 3600));
        parts
    }

    #[test]
    fn parts_are_whole_frames_within_the_target_and_add_up_to_the_chunk() {
        let input = chunk(50);
        let parts = cut(&input, 1000, false);
        // 12 frames of 40 ms fit in 0.5 s, 13 do not.
        let durations: Vec<u64> = parts.iter().map(|p| p.duration).collect();
        assert_eq!(durations, vec![43_200, 43_200, 43_200, 43_200, 7_200]);
        assert_eq!(durations.iter().sum::<u64>(), 50 * 3600);
        assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(parts[0].independent && parts.iter().skip(1).all(|p| !p.independent));
        assert!(parts[4].last && parts.iter().take(4).all(|p| !p.last));
        assert_eq!(parts[1].first_dts, 900_000 + 12 * 3600);
    }

    #[test]
    fn every_part_starts_with_the_tables_and_their_counters_run_on() {
        let input = chunk(50);
        let parts = cut(&input, 188 * 3 + 5, false);
        let mut psi_cc = [Vec::new(), Vec::new()];
        for part in &parts {
            let packets: Vec<&[u8]> = part.data.chunks(PACKET_SIZE).collect();
            assert_eq!(ts::pid(packets[0]), PAT_PID);
            assert_eq!(ts::pid(packets[1]), PMT);
            assert_eq!(ts::pid(packets[2]), VIDEO, "then the part's first frame");
            for p in &packets {
                match ts::pid(p) {
                    PAT_PID => psi_cc[0].push(ts::continuity_counter(p)),
                    PMT => psi_cc[1].push(ts::continuity_counter(p)),
                    _ => {}
                }
            }
        }
        assert_eq!(psi_cc[0], (0..5).collect::<Vec<u8>>());
        assert_eq!(psi_cc[1], (0..5).collect::<Vec<u8>>());
        // Besides the repeated tables, the segment holds the input's packets in order.
        let segment: Vec<u8> = parts.iter().flat_map(|p| p.data.clone()).collect();
        let media = |data: &[u8]| -> Vec<Vec<u8>> {
            data.chunks(PACKET_SIZE).filter(|p| ![PAT_PID, PMT].contains(&ts::pid(p))).map(|p| p.to_vec()).collect()
        };
        assert_eq!(media(&segment), media(&input));
    }

    #[test]
    fn the_same_input_cuts_the_same_parts_whatever_the_pieces() {
        let input = chunk(50);
        assert_eq!(cut(&input, 7, false), cut(&input, 64 * 1024, false));
    }

    #[test]
    fn drops_the_first_audio_pes_when_asked() {
        let input = chunk(50);
        let segment: Vec<u8> = cut(&input, 4096, true).iter().flat_map(|p| p.data.clone()).collect();
        let audio: Vec<&[u8]> = segment.chunks(PACKET_SIZE).filter(|p| ts::pid(p) == AUDIO).collect();
        let whole: Vec<&[u8]> = input.chunks(PACKET_SIZE).filter(|p| ts::pid(p) == AUDIO).collect();
        assert_eq!(audio.len(), whole.len() - 2, "one PES of two packets dropped");
        let counters: Vec<u8> = audio.iter().map(|p| ts::continuity_counter(p)).collect();
        assert_eq!(counters, (0..audio.len() as u8).map(|c| c & 0x0f).collect::<Vec<_>>(), "renumbered from 0");
    }

    /// Regression (fuzz target `parts`): a frame repeating the previous one's DTS ended a part when the frame step
    /// was longer than the part target, giving a part of duration 0; an earlier DTS overflowed the subtraction.
    /// The minimised input was a PAT, a PMT and one video PES packet twice, with a part target of 1 s and a frame
    /// hint of 2 s.
    #[test]
    fn a_repeated_or_earlier_dts_does_not_end_a_part() {
        let mut input = [pat(), pmt()].concat();
        for (cc, dts) in [216_000, 216_000, 213_000, 216_000 + 90_000].into_iter().enumerate() {
            input.extend(pes(VIDEO, cc as u8, dts));
        }
        let mut cutter = PartCutter::new(90_000, 180_000, false);
        let mut parts = cutter.push(&input);
        parts.extend(cutter.finish(4 * 90_000));
        let cuts: Vec<(u64, u64)> = parts.iter().map(|p| (p.first_dts, p.duration)).collect();
        assert_eq!(cuts, vec![(216_000, 90_000), (306_000, 270_000)]);
    }
}
