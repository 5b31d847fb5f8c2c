//! Ingest's TS realigner (`Batcher`) on arbitrary bytes split into arbitrary reads, with a fake clock that
//! flushes a partial batch at its deadline as the session does. The first input byte picks the reads and the
//! clock (high 7 bits) and whether the input is first made into aligned packets (low bit: a sync byte every
//! 188 bytes, as a clean publisher sends). Checked, besides "no panic":
//! - every batch is whole 188-byte packets, each starting with 0x47, and at most `MAX_BATCH_BYTES` (exactly
//!   that when `push` hands it out full); batches are stamped in arrival order;
//! - every packet handed out is 188 consecutive input bytes, in input order, none used twice;
//! - every input byte is accounted for: handed out, skipped, or held as the incomplete last packet;
//! - a deadline is set exactly while a partial batch waits, `MAX_BATCH_AGE` after its first byte arrived;
//! - an aligned input comes out unchanged, whatever the reads.
#![no_main]

use std::time::{Duration, Instant};

use ladder_fuzz::{boundaries, pieces, Rng};
use ladder_ingest::ts::{starts_keyframe, Batch, Batcher, MAX_BATCH_AGE, MAX_BATCH_BYTES, SYNC_BYTE, TS_PACKET_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&config, data)) = input.split_first() else { return };
    let aligned = config & 1 == 1;
    let mut data = data.to_vec();
    if aligned {
        data.chunks_mut(TS_PACKET_LEN).for_each(|packet| packet[0] = SYNC_BYTE);
    }
    let cuts = boundaries(data.len(), config >> 1);
    let mut clock = Rng::new(config);
    let (mut now, mut now_ms) = (Instant::now(), 1_700_000_000_000i64);

    let mut batcher = Batcher::new();
    let mut batches: Vec<Batch> = Vec::new();
    let mut consumed = 0u64;
    let mut batch_began: Option<Instant> = None;
    for piece in pieces(&data, 0, &cuts) {
        let step = clock.next() % 40;
        now += Duration::from_millis(step);
        now_ms += step as i64;
        if let Some(deadline) = batcher.deadline() {
            if deadline <= now {
                batches.push(batcher.flush().expect("a deadline means a partial batch"));
                assert_eq!(batcher.deadline(), None);
                batch_began = None;
            }
        }
        let full = batcher.push(piece, now, now_ms);
        consumed += piece.len() as u64;
        assert!(full.iter().all(|b| b.payload.len() == MAX_BATCH_BYTES), "push hands out full batches only");
        if !full.is_empty() {
            batch_began = None; // what is left over began with this read
        }
        batches.extend(full);
        assert_eq!(batcher.skipped() + batcher.packet_bytes() + batcher.partial_len() as u64, consumed);
        assert!(batcher.partial_len() < TS_PACKET_LEN);
        match batcher.deadline() {
            Some(deadline) => {
                let began = *batch_began.get_or_insert(now);
                assert_eq!(deadline, began + MAX_BATCH_AGE, "the deadline follows the batch's first byte");
            }
            None => batch_began = None,
        }
    }
    let pending = batcher.deadline().is_some();
    let last = batcher.flush();
    assert_eq!(pending, last.is_some(), "a deadline is set exactly while a partial batch waits");
    batches.extend(last);

    let mut out = Vec::new();
    let mut received = i64::MIN;
    for batch in &batches {
        let payload = &batch.payload;
        assert!(!payload.is_empty() && payload.len() <= MAX_BATCH_BYTES);
        assert_eq!(payload.len() % TS_PACKET_LEN, 0, "whole packets");
        assert!(payload.chunks_exact(TS_PACKET_LEN).all(|p| p[0] == SYNC_BYTE), "each starts with 0x47");
        assert!(batch.received_ms >= received, "batches are stamped in arrival order");
        received = batch.received_ms;
        let _ = starts_keyframe(payload);
        out.extend_from_slice(payload);
    }
    assert_eq!(out.len() as u64, batcher.packet_bytes());

    // Each packet out is a window of the input after the previous one: greedy earliest matching proves it.
    let mut at = 0;
    for packet in out.chunks_exact(TS_PACKET_LEN) {
        let found = data[at..].windows(TS_PACKET_LEN).position(|w| w == packet);
        let found = found.expect("every packet handed out is 188 consecutive input bytes, in order");
        at += found + TS_PACKET_LEN;
    }
    if aligned {
        assert_eq!(out, data[..data.len() / TS_PACKET_LEN * TS_PACKET_LEN], "aligned input comes out unchanged");
        assert_eq!(batcher.skipped(), 0);
    }
});
