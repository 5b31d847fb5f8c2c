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

/// The section carried by a PSI packet that starts one (single-packet sections, which is what PAT and PMT
/// are in practice), without its CRC.
fn section(packet: &[u8]) -> Option<&[u8]> {
    if !unit_start(packet) {
        return None;
    }
    let payload = payload(packet)?;
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    let length = usize::from(u16::from(*section.get(1)? & 0x0f) << 8 | u16::from(*section.get(2)?));
    // 3 header bytes + length, of which the last 4 are the CRC.
    section.get(..(3 + length).checked_sub(4)?)
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
        .and_then(|streams| streams.into_iter().find(|es| !stream_type::is_video(es.stream_type)))
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
                let base = last - last % PTS_MODULO;
                [base + raw, base + raw + PTS_MODULO, (base + raw).wrapping_sub(PTS_MODULO)]
                    .into_iter()
                    .filter(|candidate| *candidate < u64::MAX / 2)
                    .min_by_key(|candidate| candidate.abs_diff(last))
                    .unwrap_or(base + raw)
            }
        };
        self.last = Some(value);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
