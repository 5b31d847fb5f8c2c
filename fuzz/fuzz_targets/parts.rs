//! The rendition side of the media crate on arbitrary bytes: `PartCutter` (LL-HLS parts of an encoded chunk)
//! and the probe helpers the transcoder runs on ffmpeg's output. The first two input bytes pick the part
//! target, the frame hint, whether the first audio PES is dropped and how the rest is split into reads.
//! Checked, besides "no panic":
//! - parts are numbered from 0, only the first is independent, only the one from `finish` is last;
//! - every part is whole packets starting with 0x47, its first DTS after the previous part's, and a part's
//!   duration reaches exactly to the next part's first DTS;
//! - the parts hold the input's packets in order, only the PAT and PMT repeated and renumbered;
//! - the same input cuts the same parts whatever the reads.
#![no_main]

use std::collections::HashSet;

use ladder_fuzz::{boundaries, pieces};
use ladder_media::{
    probe,
    ts::{self, PACKET_SIZE, PAT_PID, SYNC},
    Part, PartCutter, CLOCK,
};
use libfuzzer_sys::fuzz_target;

const PART_TARGETS: [u64; 4] = [0, 1, CLOCK / 2, CLOCK];
const FRAME_HINTS: [u64; 4] = [0, 1, 3000, CLOCK * 2];

fuzz_target!(|input: &[u8]| {
    let [settings, split, data @ ..] = input else { return };
    let target = PART_TARGETS[usize::from(settings & 3)];
    let hint = FRAME_HINTS[usize::from((settings >> 2) & 3)];
    let drop_audio = settings & 0x10 != 0;
    let duration = u64::from(settings >> 5) * CLOCK / 2;

    let parts = cut(data, target, hint, drop_audio, duration, &boundaries(data.len(), *split));
    assert!(parts == cut(data, target, hint, drop_audio, duration, &[data.len()]), "parts depend on the reads");
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.index as usize, i);
        assert_eq!(part.independent, i == 0);
        assert_eq!(part.last, i + 1 == parts.len());
        assert!(!part.data.is_empty() && part.data.len() % PACKET_SIZE == 0, "whole packets");
        assert!(part.data.chunks_exact(PACKET_SIZE).all(|p| p[0] == SYNC));
        if let Some(next) = parts.get(i + 1) {
            assert!(next.first_dts > part.first_dts, "parts start in decode order");
            assert_eq!(part.first_dts + part.duration, next.first_dts, "a part lasts until the next one");
        }
    }
    if !drop_audio {
        // The cutter reads the packets that start with a sync byte, skipping other bytes one at a time.
        let mut input_packets = Vec::new();
        let mut pos = 0;
        while pos + PACKET_SIZE <= data.len() {
            if data[pos] == SYNC {
                input_packets.push(&data[pos..pos + PACKET_SIZE]);
                pos += PACKET_SIZE;
            } else {
                pos += 1;
            }
        }
        let mut psi: HashSet<u16> = HashSet::from([PAT_PID]);
        psi.extend(input_packets.iter().filter(|p| ts::pid(p) == PAT_PID).filter_map(|p| ts::parse_pat(p)));
        let media = |packets: Vec<&[u8]>| -> Vec<Vec<u8>> {
            packets.into_iter().filter(|p| !psi.contains(&ts::pid(p))).map(<[u8]>::to_vec).collect()
        };
        let output: Vec<&[u8]> = parts.iter().flat_map(|p| p.data.chunks_exact(PACKET_SIZE)).collect();
        if !parts.is_empty() {
            assert!(media(output) == media(input_packets), "parts hold the input's packets in order");
        }
    }

    let _ = probe::needed_for_parameters(data);
    if let Some(step) = probe::first_frame_step(data) {
        assert!(step > 0 && step < CLOCK);
    }
    let dropped = ts::drop_first_audio_pes(data);
    assert!(dropped.len() <= data.len());
});

fn cut(data: &[u8], target: u64, hint: u64, drop_audio: bool, duration: u64, cuts: &[usize]) -> Vec<Part> {
    let mut cutter = PartCutter::new(target, hint, drop_audio);
    let mut parts: Vec<Part> = pieces(data, 0, cuts).flat_map(|piece| cutter.push(piece)).collect();
    parts.extend(cutter.finish(duration));
    assert_eq!(cutter.parts() as usize, parts.len());
    parts
}
