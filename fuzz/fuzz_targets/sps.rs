//! The H.264 SPS parser and the Annex B NAL scanner on arbitrary bytes (and, being as cheap, the ADTS header).
//! Checked, besides "no panic": an SPS that parses is an SPS NAL unit with a picture of a plausible size
//! (1 to 16384 pixels wide, 1 to 32768 high) and a well-formed RFC 6381 codecs string; the NAL units found
//! start right after a 00 00 01 start code, in order, and lie within the input.
#![no_main]

use ladder_media::{aac, h264};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(sps) = h264::parse_sps(data) {
        assert_eq!(h264::nal_type(data), Some(h264::NAL_SPS));
        assert!((1..=16 * 1024).contains(&sps.width), "width {}", sps.width);
        assert!((1..=32 * 1024).contains(&sps.height), "height {}", sps.height);
        let codecs = sps.codecs();
        assert!(codecs.len() == 11 && codecs.starts_with("avc1."), "{codecs}");
    }

    let starts = h264::nal_starts(data);
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "NAL units in order");
    assert!(starts.iter().all(|&s| s >= 3 && s <= data.len() && data[s - 3..s] == [0, 0, 1]));
    let units = h264::nal_units(data);
    assert_eq!(units.len(), starts.len());
    let range = data.as_ptr_range();
    assert!(units.iter().all(|u| range.start <= u.as_ptr() && u.as_ptr_range().end <= range.end));
    for unit in &units {
        let _ = h264::parse_sps(unit);
    }

    if let Some(header) = aac::adts_header(data) {
        assert!((1..=4).contains(&header.object_type) && header.channels <= 7 && header.sample_rate >= 7350);
    }
});
