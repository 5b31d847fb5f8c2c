//! `Chunker::push` on arbitrary bytes delivered in arbitrary reads. The first input byte picks the target
//! duration (low 3 bits) and how the rest is split into reads (high 5 bits). Checked, besides "no panic":
//! - every chunk is whole 188-byte packets, each starting with 0x47, the first one a PAT;
//! - chunks come in input order (`input_end` grows, at most the input's length), each announced by a
//!   `Started` with the same first PTS, and `next` resumes exactly where the chunk ended;
//! - durations are positive, and a chunk without a discontinuity starts where the previous one ended;
//! - `growing()` only grows and is a prefix of the chunk pushed out, `settled()` a prefix even at `finish`;
//! - a chunker resumed from a `Started`, fed the input from there in the same reads, cuts the same chunks
//!   (what the segmenter's takeover relies on);
//! - after an error, the chunker keeps refusing input.
#![no_main]

use ladder_fuzz::{boundaries, pieces};
use ladder_media::{
    ts::{self, PACKET_SIZE, PAT_PID, SYNC},
    Chunk, Chunker, MediaError, Started, CLOCK,
};
use libfuzzer_sys::fuzz_target;

/// Target durations: degenerate ones, the usual ones, and the probe's "never".
const TARGETS: [u64; 8] = [0, 1, CLOCK / 100, CLOCK / 2, CLOCK, 2 * CLOCK, 6 * CLOCK, u64::MAX / 4];

#[derive(Default)]
struct Run {
    chunks: Vec<Chunk>,
    started: Vec<Started>,
    error: Option<MediaError>,
}

fuzz_target!(|input: &[u8]| {
    let Some((&config, data)) = input.split_first() else { return };
    let target = TARGETS[usize::from(config & 7)];
    let cuts = boundaries(data.len(), config >> 3);
    let run = cut(Chunker::new(target), data, 0, &cuts);
    check(&run, data.len() as u64);

    let _ = ladder_media::probe::probe(data);

    // Resume from one of the chunk starts and compare what follows.
    if run.started.is_empty() {
        return;
    }
    let k = usize::from(config) % run.started.len();
    let resume = run.started[k].resume.clone();
    let from = usize::try_from(resume.input_offset).expect("an offset within the input");
    assert!(from < data.len());
    let resumed = cut(Chunker::resume(target, resume), data, from, &cuts);
    assert_eq!(resumed.error, run.error, "a resumed chunker fails as the original does");
    assert_eq!(resumed.started.as_slice(), &run.started[k..], "a resumed chunker starts the same chunks");
    assert_eq!(resumed.chunks.len(), run.chunks.len().saturating_sub(k));
    for (a, b) in resumed.chunks.iter().zip(&run.chunks[k..]) {
        assert!(a == b, "a resumed chunker cuts the same chunks (chunk at {} differs)", b.first_pts);
    }
});

fn cut(mut chunker: Chunker, data: &[u8], from: usize, cuts: &[usize]) -> Run {
    let mut run = Run::default();
    // The chunk being built: what growing() and settled() were after the last push.
    let mut growing: Vec<u8> = Vec::new();
    let mut settled: Vec<u8> = Vec::new();
    for piece in pieces(data, from, cuts) {
        match chunker.push(piece) {
            Ok(chunks) => {
                if let Some(first) = chunks.first() {
                    assert!(first.data.starts_with(&growing), "growing() is a prefix of the finished chunk");
                    assert!(first.data.starts_with(&settled), "settled() is a prefix of the finished chunk");
                    assert!(chunks.iter().all(|c| c.next.is_some()), "only the last chunk has no next");
                } else {
                    assert!(chunker.growing().starts_with(&growing), "growing() only grows");
                }
                run.chunks.extend(chunks);
                run.started.extend(chunker.take_started());
                growing = chunker.growing().to_vec();
                settled = chunker.settled().to_vec();
                assert!(growing.starts_with(&settled), "settled() is a prefix of growing()");
                assert!(chunker.input_offset() <= data.len() as u64);
            }
            Err(error) => {
                assert_eq!(chunker.push(b"\x47").err().as_ref(), Some(&error), "a failed chunker stays failed");
                assert_eq!(chunker.diagnose().as_ref(), Some(&error));
                assert!(chunker.finish().is_none());
                run.error = Some(error);
                return run;
            }
        }
    }
    let diagnosis = chunker.diagnose();
    let last = chunker.finish();
    run.started.extend(chunker.take_started());
    match last {
        Some(last) => {
            assert!(diagnosis.is_none(), "a chunk came out, yet diagnose() says {diagnosis:?}");
            assert!(last.data.starts_with(&settled), "settled() is a prefix of the last chunk");
            assert!(last.next.is_none());
            run.chunks.push(last);
        }
        None => assert!(run.chunks.is_empty() && diagnosis.is_some(), "diagnose() says why no chunk came out"),
    }
    run
}

fn check(run: &Run, input_len: u64) {
    if run.error.is_none() {
        assert_eq!(run.started.len(), run.chunks.len(), "every chunk is announced once");
    } else {
        assert!(run.started.len() >= run.chunks.len());
    }
    let mut input_end = 0;
    for (i, chunk) in run.chunks.iter().enumerate() {
        assert!(!chunk.data.is_empty() && chunk.data.len() % PACKET_SIZE == 0, "whole packets");
        assert!(chunk.data.chunks_exact(PACKET_SIZE).all(|p| p[0] == SYNC), "every packet starts with 0x47");
        assert_eq!(ts::pid(&chunk.data), PAT_PID, "a chunk starts with the PAT");
        assert!(chunk.duration > 0, "chunk {i} lasts {}", chunk.duration);
        assert!(chunk.input_end >= input_end && chunk.input_end <= input_len, "chunks come in input order");
        input_end = chunk.input_end;
        if let Some(next) = &chunk.next {
            assert_eq!(next.input_offset, chunk.input_end, "the next chunk resumes where this one ended");
        }
        let started = &run.started[i];
        assert_eq!((started.first_pts, started.discontinuity), (chunk.first_pts, chunk.discontinuity));
        if let Some(following) = run.chunks.get(i + 1) {
            if !following.discontinuity {
                assert_eq!(
                    chunk.first_pts.checked_add(chunk.duration),
                    Some(following.first_pts),
                    "without a discontinuity, a chunk starts where the previous one ended"
                );
            }
        }
    }
}
