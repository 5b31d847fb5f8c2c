//! H.264 Annex B byte streams: NAL unit boundaries and the sequence parameter set.

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;

/// Start offsets (of the NAL header byte, after the start code) of every NAL unit in `data`.
pub fn nal_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
}

/// The NAL units of `data`, each without its start code (trailing zero bytes of a 4-byte start code stay
/// attached to the previous unit, which is harmless for parsing).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let starts = nal_starts(data);
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).map_or(data.len(), |next| next - 3);
            &data[start..end.max(start)]
        })
        .collect()
}

pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// What ladder needs from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl Sps {
    /// RFC 6381 codecs string, e.g. `avc1.64001f`.
    pub fn codecs(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// The most macroblocks an SPS may give a side (or a field's map units): 16384 pixels, four times the widest
/// frame H.264's levels allow (level 6.2: 8192x4320). More is refused as not a real picture.
const MAX_MBS_PER_SIDE: u32 = 1024;

/// Parses an SPS NAL unit (header byte included). `None` for anything that is not a plausible SPS.
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal_type(nal)? != NAL_SPS || nal.len() < 4 {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let mut r = BitReader { data: &rbsp, pos: 0 };
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            // num_ref_frames_in_pic_order_cnt_cycle: at most 255 (7.4.2.1.1).
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
                // Every number below comes from the publisher: bounded, and computed with checked arithmetic, so that a
                // hostile SPS is refused (None) instead of overflowing.
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    if width_mbs > MAX_MBS_PER_SIDE || height_map_units > MAX_MBS_PER_SIDE {
        return None;
    }
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bits(1)? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sub_width, sub_height) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_x = if chroma_format_idc == 0 { 1 } else { sub_width };
        let unit_y = (if chroma_format_idc == 0 { 1 } else { sub_height }) * (2 - frame_mbs_only);
        crop_x = left.checked_add(right)?.checked_mul(unit_x)?;
        crop_y = top.checked_add(bottom)?.checked_mul(unit_y)?;
    }
    let width = width_mbs.checked_mul(16)?.checked_sub(crop_x)?;
    let height = (2 - frame_mbs_only).checked_mul(height_map_units)?.checked_mul(16)?.checked_sub(crop_y)?;
    if width == 0 || height == 0 {
        return None;
    }
    Some(Sps { profile_idc, constraint_flags, level_idc, width, height })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation prevention bytes (00 00 03 -> 00 00).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            value = (value << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(value)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i64> {
        let v = i64::from(self.ue()?);
        Some(if v % 2 == 1 { (v + 1) / 2 } else { -(v / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_x264_high_profile_sps() {
        // SPS of x264, High profile level 3.1, 1280x720 (cropped from 1280x720 mbs: 80x45).
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
            0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ];
        let parsed = parse_sps(&sps).expect("sps parses");
        assert_eq!(parsed.codecs(), "avc1.64001f");
        assert_eq!((parsed.width, parsed.height), (1280, 720));
    }

    #[test]
    fn parses_a_cropped_main_profile_sps() {
        // x264 Main profile 854x480: 54 macroblocks wide, cropped by 10 pixels.
        let sps = [
            0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x6c, 0x1e, 0xf3, 0x78, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00,
            0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
        ];
        let parsed = parse_sps(&sps).expect("sps parses");
        assert_eq!(parsed.codecs(), "avc1.4d401f");
        assert_eq!((parsed.width, parsed.height), (854, 480));
    }

    /// Writes H.264 bitstream syntax: fixed-width fields and Exp-Golomb codes.
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn u(mut self, n: usize, value: u64) -> Self {
            self.0.extend((0..n).rev().map(|i| (value >> i) & 1 == 1));
            self
        }
        fn ue(self, value: u64) -> Self {
            let code = value + 1;
            let len = 64 - code.leading_zeros() as usize;
            self.u(len - 1, 0).u(len, code)
        }
        /// The NAL unit: header, these bits, the stop bit, with emulation prevention.
        fn sps(self) -> Vec<u8> {
            let mut bits = self.u(1, 1).0;
            bits.resize(bits.len().div_ceil(8) * 8, false);
            let bytes: Vec<u8> =
                bits.chunks(8).map(|b| b.iter().fold(0u8, |a, &bit| (a << 1) | u8::from(bit))).collect();
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for b in bytes {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    /// A Baseline SPS (profile 66) with these dimensions in macroblocks minus one and this cropping.
    fn baseline_sps(width_mbs_minus1: u64, height_minus1: u64, crop: Option<[u64; 4]>) -> Vec<u8> {
        let mut bits = Bits::default().u(8, 66).u(8, 0).u(8, 31).ue(0); // profile, flags, level, sps id
        bits = bits.ue(0).ue(2); // log2_max_frame_num_minus4, pic_order_cnt_type 2
        bits = bits.ue(1).u(1, 0); // max_num_ref_frames, gaps
        bits = bits.ue(width_mbs_minus1).ue(height_minus1).u(1, 1).u(1, 1); // frame_mbs_only, direct_8x8
        bits = match crop {
            Some([l, r, t, b]) => bits.u(1, 1).ue(l).ue(r).ue(t).ue(b),
            None => bits.u(1, 0),
        };
        bits.u(1, 0).sps() // no VUI
    }

    #[test]
    fn the_test_writer_makes_an_sps_the_parser_reads() {
        let parsed = parse_sps(&baseline_sps(39, 29, Some([0, 0, 0, 4]))).expect("sps parses");
        assert_eq!((parsed.width, parsed.height), (640, 472));
        assert_eq!(parsed.codecs(), "avc1.42001f");
    }

    /// Regression: sizes and cropping from the publisher overflowed the multiplications (a panic in debug
    /// builds, a wrong size in release), which made every chunk of the stream a poison pill.
    #[test]
    fn a_hostile_sps_is_refused_not_a_panic() {
        let huge = u64::from(u32::MAX) - 1; // the largest value ue() reads
        for sps in [
            baseline_sps(huge, 10, None),
            baseline_sps(10, huge, None),
            baseline_sps(1_000_000, 10, None),
            baseline_sps(10, 10, Some([huge, huge, 0, 0])),
            baseline_sps(10, 10, Some([0, 0, huge, 1])),
            baseline_sps(10, 10, Some([88, 0, 0, 0])), // cropped to nothing
            baseline_sps(1024, 10, None),              // one macroblock over the bound
        ] {
            assert_eq!(parse_sps(&sps), None, "{sps:02x?}");
        }
        assert!(parse_sps(&baseline_sps(1023, 1023, None)).is_some(), "the largest size allowed");
    }

    #[test]
    fn a_pic_order_cycle_longer_than_the_standard_allows_is_refused() {
        // pic_order_cnt_type 1 with `cycle` offsets, then a whole 640x480 rest of the SPS.
        let sps = |cycle: u64| {
            let mut bits = Bits::default().u(8, 66).u(8, 0).u(8, 31).ue(0).ue(0);
            bits = bits.ue(1).u(1, 0).ue(0).ue(0).ue(cycle);
            for _ in 0..cycle {
                bits = bits.ue(0);
            }
            bits.ue(1).u(1, 0).ue(39).ue(29).u(1, 1).u(1, 1).u(1, 0).u(1, 0).sps()
        };
        assert_eq!(parse_sps(&sps(255)).map(|s| (s.width, s.height)), Some((640, 480)));
        assert_eq!(parse_sps(&sps(256)), None);
    }

    #[test]
    fn truncated_and_arbitrary_bytes_never_panic() {
        let good = baseline_sps(39, 29, None);
        for len in 0..good.len() {
            let _ = parse_sps(&good[..len]);
        }
        // A cheap deterministic sweep of arbitrary bytes after the SPS header (the fuzz target goes further).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut nal = vec![0x67];
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                nal.push(state as u8);
            }
            state = state.wrapping_add(1);
            let _ = parse_sps(&nal);
        }
    }

    #[test]
    fn finds_nal_units_after_3_and_4_byte_start_codes() {
        let data = [0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 9];
        let types: Vec<_> = nal_units(&data).iter().filter_map(|n| nal_type(n)).collect();
        assert_eq!(types, vec![9, 7, 5]);
    }
}
