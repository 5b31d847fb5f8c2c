//! MPEG-TS (ISO/IEC 13818-1) packets, PSI tables and PES headers.

pub const PACKET_SIZE: usize = 188;
pub const SYNC: u8 = 0x47;
pub const PAT_PID: u16 = 0;
/// Timestamps are 33 bits wide.
pub const PTS_MODULO: u64 = 1 << 33;

pub fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// payload_unit_start_indicator: a PES packet or a PSI section starts in this packet.
pub fn unit_start(packet: &[u8]) -> bool {
    packet[1] & 0x40 != 0
}

pub fn continuity_counter(packet: &[u8]) -> u8 {
    packet[3] & 0x0f
}

pub fn set_continuity_counter(packet: &mut [u8], cc: u8) {
    packet[3] = (packet[3] & 0xf0) | (cc & 0x0f);
}

fn has_payload(packet: &[u8]) -> bool {
    packet[3] & 0x10 != 0
}

fn has_adaptation(packet: &[u8]) -> bool {
    packet[3] & 0x20 != 0
}

/// The discontinuity_indicator of the adaptation field.
pub fn discontinuity_indicator(packet: &[u8]) -> bool {
    has_adaptation(packet) && packet[4] > 0 && packet[5] & 0x80 != 0
}

pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    if !has_payload(packet) {
        return None;
    }
    let start = if has_adaptation(packet) { 5 + usize::from(packet[4]) } else { 4 };
    packet.get(start..PACKET_SIZE).filter(|p| !p.is_empty())
}

/// CRC-32/MPEG-2, the checksum that ends every PSI section.
const PSI_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);

/// The CRC a PSI section (table id to the last byte before the CRC) must end with.
pub fn section_crc(section: &[u8]) -> u32 {
    PSI_CRC.checksum(section)
}

/// The section carried by a PSI packet that starts one (single-packet sections, which is what PAT and PMT
/// are in practice), without its CRC. `None` when its CRC does not match: a corrupt table is ignored (the
/// next copy, a tenth of a second later, is used), never taken for a new program.
fn section(packet: &[u8]) -> Option<&[u8]> {
    if !unit_start(packet) {
        return None;
    }
    let payload = payload(packet)?;
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    let length = usize::from(u16::from(*section.get(1)? & 0x0f) << 8 | u16::from(*section.get(2)?));
    // 3 header bytes + length, of which the last 4 are the CRC.
    let (table, crc) = section.get(..3 + length)?.split_at_checked((3 + length).checked_sub(4)?)?;
    (section_crc(table) == u32::from_be_bytes(crc.try_into().ok()?)).then_some(table)
}

/// The PMT PID of the first program listed in a PAT packet.
pub fn parse_pat(packet: &[u8]) -> Option<u16> {
    let section = section(packet)?;
    if section.first() != Some(&0x00) {
        return None;
    }
    section.get(8..)?.chunks_exact(4).find_map(|entry| {
        let program = u16::from_be_bytes([entry[0], entry[1]]);
        (program != 0).then(|| (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]))
    })
}

/// One elementary stream listed in a PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsInfo {
    pub stream_type: u8,
    pub pid: u16,
}

pub mod stream_type {
    pub const MPEG1_VIDEO: u8 = 0x01;
    pub const MPEG2_VIDEO: u8 = 0x02;
    pub const AAC_ADTS: u8 = 0x0f;
    pub const MPEG4_VIDEO: u8 = 0x10;
    pub const AAC_LATM: u8 = 0x11;
    pub const H264: u8 = 0x1b;
    pub const HEVC: u8 = 0x24;
    pub const VVC: u8 = 0x33;

    pub fn is_video(t: u8) -> bool {
        matches!(t, MPEG1_VIDEO | MPEG2_VIDEO | MPEG4_VIDEO | H264 | HEVC | VVC | 0x42 | 0xd1 | 0xea)
    }

    pub fn name(t: u8) -> String {
        match t {
            MPEG1_VIDEO => "MPEG-1 video".into(),
            MPEG2_VIDEO => "MPEG-2 video".into(),
            MPEG4_VIDEO => "MPEG-4 part 2 video".into(),
            H264 => "H.264".into(),
            HEVC => "HEVC".into(),
            VVC => "VVC".into(),
            AAC_ADTS => "AAC".into(),
            AAC_LATM => "AAC LATM".into(),
            0x03 | 0x04 => "MPEG audio".into(),
            0x81 => "AC-3".into(),
            0x42 => "AVS".into(),
            0xd1 => "Dirac".into(),
            0xea => "VC-1".into(),
            other => format!("stream type 0x{other:02x}"),
        }
    }
}

/// The audio stream ladder carries: the first AAC (ADTS) stream. Any other elementary stream (SCTE-35 cues,
/// ID3 metadata, a second language in another codec) is not taken for audio; the chunks carry it untouched.
pub fn audio_stream(streams: &[EsInfo]) -> Option<EsInfo> {
    streams.iter().copied().find(|es| es.stream_type == stream_type::AAC_ADTS)
}

/// The elementary streams of a PMT packet.
pub fn parse_pmt(packet: &[u8]) -> Option<Vec<EsInfo>> {
    let section = section(packet)?;
    if section.first() != Some(&0x02) {
        return None;
    }
    let program_info = usize::from(u16::from(*section.get(10)? & 0x0f) << 8 | u16::from(*section.get(11)?));
    let mut rest = section.get(12 + program_info..)?;
    let mut streams = Vec::new();
    while rest.len() >= 5 {
        let es_info = usize::from(u16::from(rest[3] & 0x0f) << 8 | u16::from(rest[4]));
        streams.push(EsInfo { stream_type: rest[0], pid: (u16::from(rest[1] & 0x1f) << 8) | u16::from(rest[2]) });
        rest = rest.get(5 + es_info..).unwrap_or_default();
    }
    Some(streams)
}

/// The header fields ladder reads from the start of a PES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Offset of the elementary stream data within the payload.
    pub data_offset: usize,
}

pub fn parse_pes_header(payload: &[u8]) -> Option<PesHeader> {
    if payload.len() < 9 || payload[..3] != [0, 0, 1] {
        return None;
    }
    let flags = payload[7] >> 6;
    let data_offset = 9 + usize::from(payload[8]);
    let pts = if flags & 0b10 != 0 { payload.get(9..14).map(read_timestamp) } else { None };
    let dts = if flags == 0b11 { payload.get(14..19).map(read_timestamp) } else { pts };
    Some(PesHeader { pts, dts, data_offset: data_offset.min(payload.len()) })
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// Removes the first PES packet of the first audio stream from a transport stream, renumbering that PID's
/// continuity counters so the result stays valid. Used to drop an audio encoder's priming frame, which would
/// otherwise overlap the end of the previous chunk. Returns the input unchanged when there is no audio.
pub fn drop_first_audio_pes(data: &[u8]) -> Vec<u8> {
    let packets = || data.chunks_exact(PACKET_SIZE).filter(|p| p[0] == SYNC);
    let pmt_pid = packets().find(|p| pid(p) == PAT_PID).and_then(parse_pat);
    let audio = pmt_pid
        .and_then(|pmt| packets().find(|p| pid(p) == pmt).and_then(parse_pmt))
        .and_then(|streams| audio_stream(&streams))
        .map(|es| es.pid);
    let Some(audio) = audio else {
        return data.to_vec();
    };
    let mut out = Vec::with_capacity(data.len());
    // 0: before the first audio PES, 1: inside it (dropping), 2: after it.
    let mut state = 0;
    let mut removed: u8 = 0;
    for packet in data.chunks_exact(PACKET_SIZE) {
        if pid(packet) != audio {
            out.extend_from_slice(packet);
            continue;
        }
        if unit_start(packet) {
            state = if state == 0 { 1 } else { 2 };
        }
        match state {
            1 => removed = removed.wrapping_add(u8::from(payload(packet).is_some())),
            _ => {
                let start = out.len();
                out.extend_from_slice(packet);
                if removed > 0 {
                    let cc = continuity_counter(packet).wrapping_sub(removed) & 0x0f;
                    set_continuity_counter(&mut out[start..], cc);
                }
            }
        }
    }
    out
}

/// Extends 33-bit timestamps into a monotonic 64-bit timeline across the wrap-around.
#[derive(Debug, Default, Clone)]
pub struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    /// An unwrapper that continues from `last`, the previous unwrapped value.
    pub fn resume(last: Option<u64>) -> Unwrapper {
        Unwrapper { last }
    }

    /// The last unwrapped value.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

impl Unwrapper {
    pub fn unwrap(&mut self, raw: u64) -> u64 {
        let raw = raw % PTS_MODULO;
        let value = match self.last {
            None => raw,
            Some(last) => {
                // The same raw value in the wrap period of `last`, the next one or the previous one: whichever is
                // closest. Checked, for a `last` resumed from anywhere.
                let here = (last - last % PTS_MODULO).saturating_add(raw);
                [Some(here), here.checked_add(PTS_MODULO), here.checked_sub(PTS_MODULO)]
                    .into_iter()
                    .flatten()
                    .filter(|candidate| *candidate < u64::MAX / 2)
                    .min_by_key(|candidate| candidate.abs_diff(last))
                    .unwrap_or(here)
            }
        };
        self.last = Some(value);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PMT packet for program 1 (PCR on 0x100) listing `streams` (type, PID), with its CRC.
    fn pmt_packet(streams: &[(u8, u16)]) -> [u8; PACKET_SIZE] {
        let length = 9 + 5 * streams.len() + 4;
        let mut table = vec![0x02, 0xb0, length as u8, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00];
        for (kind, pid) in streams {
            table.extend_from_slice(&[*kind, 0xe0 | (pid >> 8) as u8, *pid as u8, 0xf0, 0]);
        }
        table.extend_from_slice(&section_crc(&table).to_be_bytes());
        let mut packet = [0xff; PACKET_SIZE];
        packet[..5].copy_from_slice(&[SYNC, 0x40 | 0x10, 0x00, 0x10, 0x00]);
        packet[5..5 + table.len()].copy_from_slice(&table);
        packet
    }

    #[test]
    fn the_crc_is_mpeg2s() {
        // The check value of CRC-32/MPEG-2.
        assert_eq!(section_crc(b"123456789"), 0x0376_e6e7);
    }

    /// Regression: one corrupt PMT (a flipped bit in transit) was parsed as a new program, and a stream type
    /// changed by it failed a healthy session.
    #[test]
    fn a_section_with_a_wrong_crc_is_ignored() {
        let good = pmt_packet(&[(stream_type::H264, 0x100), (stream_type::AAC_ADTS, 0x101)]);
        assert_eq!(parse_pmt(&good).map(|s| s.len()), Some(2));
        for at in 5..5 + 12 + 10 + 4 {
            let mut bad = good;
            bad[at] ^= 0x04;
            assert_eq!(parse_pmt(&bad), None, "byte {at} flipped");
        }
    }

    #[test]
    fn audio_is_the_aac_stream_not_the_first_other_one() {
        let streams = parse_pmt(&pmt_packet(&[
            (stream_type::H264, 0x100),
            (0x86, 0x102), // SCTE-35 cues
            (0x15, 0x103), // ID3 metadata
            (stream_type::AAC_ADTS, 0x101),
        ]))
        .expect("pmt");
        assert_eq!(audio_stream(&streams).map(|es| es.pid), Some(0x101));
        let no_aac = parse_pmt(&pmt_packet(&[(stream_type::H264, 0x100), (0x86, 0x102)])).expect("pmt");
        assert_eq!(audio_stream(&no_aac), None);
    }

    #[test]
    fn unwraps_across_the_33_bit_boundary() {
        let mut u = Unwrapper::default();
        assert_eq!(u.unwrap(PTS_MODULO - 3000), PTS_MODULO - 3000);
        assert_eq!(u.unwrap(0), PTS_MODULO);
        assert_eq!(u.unwrap(3000), PTS_MODULO + 3000);
        // B-frames reorder slightly backwards across the wrap too.
        assert_eq!(u.unwrap(PTS_MODULO - 1500), PTS_MODULO - 1500);
    }

    #[test]
    fn unwrapping_never_overflows() {
        for last in [u64::MAX, u64::MAX - 1, u64::MAX / 2, u64::MAX / 2 - 1, PTS_MODULO - 1] {
            for raw in [0, 1, PTS_MODULO / 2, PTS_MODULO - 1, u64::MAX] {
                let _ = Unwrapper::resume(Some(last)).unwrap(raw);
            }
        }
    }

    #[test]
    fn reads_pes_timestamps() {
        // PTS only, value 0x1_2345_6789 encoded as in 13818-1 2.4.3.7.
        let pts: u64 = 0x1_2345_6789;
        let b = [
            0x21 | (((pts >> 30) as u8 & 0x07) << 1),
            (pts >> 22) as u8,
            (((pts >> 15) as u8) << 1) | 1,
            (pts >> 7) as u8,
            ((pts as u8) << 1) | 1,
        ];
        let mut payload = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
        payload.extend_from_slice(&b);
        let header = parse_pes_header(&payload).expect("pes header");
        assert_eq!(header.pts, Some(pts));
        assert_eq!(header.dts, Some(pts));
        assert_eq!(header.data_offset, 14);
    }
}
