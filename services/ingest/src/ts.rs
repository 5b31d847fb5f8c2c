//! Turning SRT payloads into NATS-sized batches of whole MPEG-TS packets.
//!
//! SRT live mode carries 1316-byte payloads (7 TS packets), but nothing forces a publisher to send whole
//! packets, so [`Batcher`] keeps the remainder of a read until the next one completes it, and resynchronises
//! on the 0x47 sync byte if the input is not aligned. Consumers can then rely on every message payload being a
//! run of whole 188-byte packets. It is pure (the caller passes the clock in) so it is tested without I/O.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub const TS_PACKET_LEN: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;
/// The largest whole number of TS packets that fits in 64 KiB.
pub const MAX_BATCH_BYTES: usize = (64 * 1024 / TS_PACKET_LEN) * TS_PACKET_LEN;
/// A partial batch is published at the latest this long after its first byte arrived.
pub const MAX_BATCH_AGE: Duration = Duration::from_millis(50);

/// One message for `ingest.ts.<stream>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Whole TS packets, at most [`MAX_BATCH_BYTES`].
    pub payload: Bytes,
    /// Unix milliseconds at which the last byte of the batch arrived.
    pub received_ms: i64,
}

#[derive(Debug, Default)]
pub struct Batcher {
    /// Start of an incomplete packet (begins with the sync byte, shorter than a packet).
    partial: Vec<u8>,
    batch: BytesMut,
    /// When the first byte of `batch` arrived.
    batch_started: Option<Instant>,
    /// When the last byte of `batch` arrived, in Unix milliseconds.
    batch_received_ms: i64,
    /// Bytes dropped while looking for a sync byte.
    skipped: u64,
    /// Bytes of whole packets handed out or waiting in `batch`.
    packet_bytes: u64,
}

impl Batcher {
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Adds bytes that arrived at `now` (`now_ms` in Unix milliseconds); returns the batches that filled up.
    pub fn push(&mut self, mut data: &[u8], now: Instant, now_ms: i64) -> Vec<Batch> {
        let before = self.batch.len();
        if !self.partial.is_empty() {
            let missing = TS_PACKET_LEN - self.partial.len();
            let take = missing.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < TS_PACKET_LEN {
                return Vec::new();
            }
            self.batch.extend_from_slice(&self.partial);
            self.partial.clear();
        }
        // After bytes were skipped, a 0x47 only counts as a packet start if the next packet starts with one too
        // (when the input reaches that far): 0x47 is a common byte inside payloads.
        let mut resyncing = false;
        while !data.is_empty() {
            let Some(sync) = data.iter().position(|&b| b == SYNC_BYTE) else {
                self.skipped += data.len() as u64;
                break;
            };
            if sync > 0 {
                self.skipped += sync as u64;
                data = &data[sync..];
                resyncing = true;
            }
            let mut packets = 0;
            while data.len() >= (packets + 1) * TS_PACKET_LEN && data[packets * TS_PACKET_LEN] == SYNC_BYTE {
                packets += 1;
            }
            if resyncing && packets == 1 && data.len() >= 2 * TS_PACKET_LEN {
                packets = 0;
            }
            if packets == 0 {
                if data.len() < TS_PACKET_LEN {
                    self.partial.extend_from_slice(data);
                    break;
                }
                // A stray 0x47 inside garbage.
                self.skipped += 1;
                data = &data[1..];
                resyncing = true;
                continue;
            }
            resyncing = false;
            let len = packets * TS_PACKET_LEN;
            self.batch.extend_from_slice(&data[..len]);
            data = &data[len..];
        }
        let added = self.batch.len() - before;
        if added == 0 {
            return Vec::new();
        }
        self.packet_bytes += added as u64;
        self.batch_received_ms = now_ms;
        let mut full = Vec::new();
        while self.batch.len() >= MAX_BATCH_BYTES {
            let payload = self.batch.split_to(MAX_BATCH_BYTES).freeze();
            full.push(Batch { payload, received_ms: now_ms });
            self.batch_started = None;
        }
        if !self.batch.is_empty() && self.batch_started.is_none() {
            self.batch_started = Some(now);
        }
        full
    }

    /// When the partial batch must be flushed, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.batch_started.map(|started| started + MAX_BATCH_AGE)
    }

    /// Takes the partial batch, if any.
    pub fn flush(&mut self) -> Option<Batch> {
        self.batch_started = None;
        if self.batch.is_empty() {
            return None;
        }
        let payload = self.batch.split().freeze();
        debug_assert_eq!(payload.len() % TS_PACKET_LEN, 0);
        Some(Batch { payload, received_ms: self.batch_received_ms })
    }

    /// Bytes of an incomplete trailing packet, which are dropped when the session ends.
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// Bytes dropped because they were not part of a sync-aligned packet.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Bytes of whole TS packets received so far (flushed or not).
    pub fn packet_bytes(&self) -> u64 {
        self.packet_bytes
    }
}

/// Whether `payload` (whole TS packets) holds the start of an H.264 keyframe: a packet that starts a video PES
/// (stream id 0xE0 to 0xEF) whose first bytes hold an SPS or an IDR slice. Encoders repeat the SPS at every
/// keyframe of a live TS (players joining need it), so this finds the chunk boundaries the segmenter will cut
/// at without parsing the stream: it only decides where ingest begins a new trace.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    payload.chunks_exact(TS_PACKET_LEN).any(|packet| {
        if packet[0] != SYNC_BYTE || packet[1] & 0x40 == 0 {
            return false;
        }
        let body = match (packet[3] >> 4) & 0x3 {
            0b01 => &packet[4..],
            0b11 => {
                let af = usize::from(packet[4]);
                match packet.get(5 + af..) {
                    Some(body) => body,
                    None => return false,
                }
            }
            _ => return false,
        };
        if body.len() < 9 || body[..3] != [0, 0, 1] || !(0xE0..=0xEF).contains(&body[3]) {
            return false;
        }
        let es = body.get(9 + usize::from(body[8])..).unwrap_or_default();
        es.windows(4).any(|w| w[..3] == [0, 0, 1] && matches!(w[3] & 0x1F, 5 | 7))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` TS packets whose bytes after the sync byte encode the packet index, so reordering or loss shows.
    fn packets(count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(count * TS_PACKET_LEN);
        for i in 0..count {
            out.push(SYNC_BYTE);
            out.extend((1..TS_PACKET_LEN).map(|j| ((i * 7 + j) % 251) as u8 & 0x3f));
        }
        out
    }

    fn collect(batcher: &mut Batcher, input: &[u8], chunk: usize) -> Vec<Batch> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, piece) in input.chunks(chunk).enumerate() {
            out.extend(batcher.push(piece, now, i as i64));
        }
        out.extend(batcher.flush());
        out
    }

    fn concat(batches: &[Batch]) -> Vec<u8> {
        batches.iter().flat_map(|b| b.payload.iter().copied()).collect()
    }

    /// A packet starting a PES of stream `stream_id` whose payload begins with a NAL unit of `nal_type`.
    fn pes_start(stream_id: u8, nal_type: u8, adaptation: bool) -> Vec<u8> {
        let mut packet = vec![SYNC_BYTE, 0x41, 0x00, if adaptation { 0x30 } else { 0x10 }];
        if adaptation {
            packet.extend_from_slice(&[7, 0x50, 0, 0, 0, 0, 0, 0]);
        }
        packet.extend_from_slice(&[0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1]);
        packet.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, nal_type]);
        packet.resize(TS_PACKET_LEN, 0xFF);
        packet
    }

    #[test]
    fn keyframes_are_found_by_their_sps_or_idr() {
        assert!(starts_keyframe(&pes_start(0xE0, 0x67, true)));
        assert!(starts_keyframe(&pes_start(0xE0, 0x65, false)));
        // A P frame, audio, or no packet starting a PES.
        assert!(!starts_keyframe(&pes_start(0xE0, 0x41, true)));
        assert!(!starts_keyframe(&pes_start(0xC0, 0x67, false)));
        assert!(!starts_keyframe(&packets(3)));
        let mut two = packets(1);
        two.extend(pes_start(0xE0, 0x67, false));
        assert!(starts_keyframe(&two));
    }

    #[test]
    fn srt_sized_payloads_pass_through_unchanged() {
        let input = packets(70);
        let mut batcher = Batcher::new();
        let batches = collect(&mut batcher, &input, 1316);
        assert_eq!(concat(&batches), input);
        assert_eq!(batcher.packet_bytes(), input.len() as u64);
        assert_eq!(batcher.skipped(), 0);
        assert_eq!(batcher.partial_len(), 0);
    }

    #[test]
    fn unaligned_reads_are_realigned_across_reads() {
        let input = packets(50);
        for chunk in [1, 100, 187, 189, 500, 1000, 1317] {
            let mut batcher = Batcher::new();
            let batches = collect(&mut batcher, &input, chunk);
            assert_eq!(concat(&batches), input, "chunk {chunk}");
            for batch in &batches {
                assert_eq!(batch.payload.len() % TS_PACKET_LEN, 0, "chunk {chunk}");
                assert_eq!(batch.payload[0], SYNC_BYTE, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn batches_are_capped_at_64_kib_of_whole_packets() {
        assert_eq!(MAX_BATCH_BYTES, 65_424);
        let input = packets(1000);
        let mut batcher = Batcher::new();
        let now = Instant::now();
        let full = batcher.push(&input, now, 42);
        assert_eq!(full.len(), 2);
        assert!(full.iter().all(|b| b.payload.len() == MAX_BATCH_BYTES && b.received_ms == 42));
        let rest = batcher.flush().expect("a partial batch remains");
        assert_eq!(rest.payload.len(), 1000 * TS_PACKET_LEN - 2 * MAX_BATCH_BYTES);
        assert_eq!(concat(&[full, vec![rest]].concat()), input);
    }

    #[test]
    fn the_deadline_follows_the_first_byte_of_the_batch() {
        let mut batcher = Batcher::new();
        let start = Instant::now();
        assert_eq!(batcher.deadline(), None);
        assert!(batcher.push(&packets(7), start, 1).is_empty());
        assert_eq!(batcher.deadline(), Some(start + MAX_BATCH_AGE));
        assert!(batcher.push(&packets(7), start + Duration::from_millis(20), 2).is_empty());
        assert_eq!(batcher.deadline(), Some(start + MAX_BATCH_AGE), "later bytes do not postpone it");
        let batch = batcher.flush().expect("a batch");
        assert_eq!(batch.received_ms, 2, "stamped with the arrival of the last byte");
        assert_eq!(batch.payload.len(), 14 * TS_PACKET_LEN);
        assert_eq!(batcher.deadline(), None);
        assert_eq!(batcher.flush(), None);
    }

    #[test]
    fn an_incomplete_packet_alone_does_not_start_a_batch() {
        let mut batcher = Batcher::new();
        let input = packets(1);
        assert!(batcher.push(&input[..100], Instant::now(), 1).is_empty());
        assert_eq!(batcher.deadline(), None);
        assert_eq!(batcher.partial_len(), 100);
        assert_eq!(batcher.flush(), None);
    }

    #[test]
    fn garbage_before_and_between_packets_is_skipped() {
        let clean = packets(20);
        let mut input = vec![0u8, 1, 2, SYNC_BYTE, 3];
        input.extend_from_slice(&clean[..10 * TS_PACKET_LEN]);
        input.extend_from_slice(&[9, 9, 9]);
        input.extend_from_slice(&clean[10 * TS_PACKET_LEN..]);
        let mut batcher = Batcher::new();
        let batches = collect(&mut batcher, &input, 1316);
        assert_eq!(concat(&batches), clean);
        assert_eq!(batcher.skipped(), 8);
    }
}
