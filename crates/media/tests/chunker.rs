//! The chunker on real transport streams made by ffmpeg, checked with ffprobe.

use std::{path::Path, process::Command};

use ladder_media::{ts, Chunker, CLOCK};

/// Encodes `dir/name` as MPEG-TS with ffmpeg; `args` are whitespace-separated input and codec options.
fn encode(dir: &Path, name: &str, args: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut all: Vec<&str> = args.split_whitespace().collect();
    all.extend(["-f", "mpegts", path.to_str().expect("utf-8 path")]);
    ffmpeg(&all);
    path
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is installed (make test installs it)");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// `ffprobe` of the first video frame: (key_frame, pict_type).
fn first_video_frame(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1"])
        .args(["-show_entries", "frame=key_frame,pict_type", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().trim_end_matches(",").to_string()
}

fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn cut_stream(source: &[u8], target: u64) -> Vec<ladder_media::Chunk> {
    let mut chunker = Chunker::new(target);
    let mut chunks = Vec::new();
    // Odd piece sizes: packets straddle pushes the way SRT payloads and NATS batches make them.
    for piece in source.chunks(1316 * 3 + 101) {
        chunks.extend(chunker.push(piece).expect("a valid stream"));
    }
    chunks.extend(chunker.finish());
    chunks
}

#[test]
fn cuts_at_idr_frames_with_exact_continuous_durations() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 10 s, 25 fps, a keyframe every second, B-frames, AAC 48 kHz.
    let source = encode(
        dir.path(),
        "source.ts",
        "-f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 10 \
         -c:v libx264 -preset ultrafast -bf 2 -g 25 -keyint_min 25 -sc_threshold 0 -c:a aac",
    );
    let bytes = std::fs::read(&source).expect("source");
    let chunks = cut_stream(&bytes, 2 * CLOCK);

    assert_eq!(chunks.len(), 5, "10 s at 2 s targets with 1 s GOPs: {:?}", durations(&chunks));
    for (i, chunk) in chunks.iter().enumerate() {
        if i + 1 < chunks.len() {
            assert_eq!(chunk.duration, 2 * CLOCK, "chunk {i} lasts exactly 2 s");
        } else {
            // The stream's last video frame (in decode order) is dropped: nothing says whether it arrived
            // whole (see `Chunker::finish`). With B-frames that is a B-frame and the end stays where it was.
            let frame = CLOCK / 25;
            assert!((2 * CLOCK - frame..=2 * CLOCK).contains(&chunk.duration), "last: {}", chunk.duration);
        }
        assert_eq!((chunk.width, chunk.height), (640, 360));
        assert!(chunk.codecs.starts_with("avc1.") && chunk.codecs.ends_with(",mp4a.40.2"), "{}", chunk.codecs);
        assert_eq!(chunk.discontinuity, i == 0, "only the first chunk of a session is a discontinuity");
        assert_eq!(ts::pid(&chunk.data[..188]), 0, "chunk {i} starts with the PAT");
        assert!(ts::parse_pmt(&chunk.data[188..376]).is_some(), "then the PMT");
        if let Some(next) = chunks.get(i + 1) {
            assert_eq!(chunk.first_pts + chunk.duration, next.first_pts, "chunk {i} ends where {} starts", i + 1);
        }
        let path = dir.path().join(format!("{i}.ts"));
        std::fs::write(&path, &chunk.data).expect("write chunk");
        assert_eq!(first_video_frame(&path), "1,I", "chunk {i} starts with a keyframe");
        assert_eq!(decode_errors(&path), "", "chunk {i} decodes on its own");
    }
    // Every other video and audio byte is kept: the chunks hold all packets of the source but the last frame
    // (a few kB at this size) and the leading tables.
    let total: usize = chunks.iter().map(|c| c.data.len()).sum();
    assert!(total >= bytes.len() - 188 * 64, "{total} of {} bytes kept", bytes.len());
}

#[test]
fn a_gop_longer_than_the_target_gives_a_longer_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = encode(
        dir.path(),
        "source.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=30 -t 12 \
         -c:v libx264 -preset ultrafast -g 120 -keyint_min 120 -sc_threshold 0",
    );
    let chunks = cut_stream(&std::fs::read(&source).expect("source"), 2 * CLOCK);
    assert_eq!(durations(&chunks), vec![4 * CLOCK, 4 * CLOCK, 4 * CLOCK - CLOCK / 30]);
}

#[test]
fn refuses_hevc_and_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = encode(
        dir.path(),
        "hevc.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 1 \
         -c:v libx265 -preset ultrafast -x265-params log-level=error",
    );
    let mut chunker = Chunker::new(2 * CLOCK);
    let error = chunker.push(&std::fs::read(&source).expect("source")).expect_err("HEVC is refused");
    assert_eq!(error.to_string(), "unsupported video codec HEVC (ladder takes H.264)");

    let garbage: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x46).collect();
    let mut chunker = Chunker::new(2 * CLOCK);
    let error = chunker.push(&garbage).expect_err("garbage is refused");
    assert!(error.to_string().starts_with("not an MPEG transport stream"), "{error}");
}

fn durations(chunks: &[ladder_media::Chunk]) -> Vec<u64> {
    chunks.iter().map(|c| c.duration).collect()
}

#[test]
fn a_stream_cut_off_mid_packet_ends_with_a_clean_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = encode(
        dir.path(),
        "source.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=sample_rate=48000 -t 5 \
         -c:v libx264 -preset ultrafast -g 25 -c:a aac",
    );
    let bytes = std::fs::read(&source).expect("source");
    // Cut at many points, as a publisher that closes without flushing does; every last chunk must decode.
    for cut in [bytes.len() - 188 * 3, bytes.len() - 188 * 17 - 50, bytes.len() - 188 * 40] {
        let chunks = cut_stream(&bytes[..cut], 2 * CLOCK);
        let last = chunks.last().expect("chunks");
        let path = dir.path().join("last.ts");
        std::fs::write(&path, &last.data).expect("write");
        assert_eq!(decode_errors(&path), "", "last chunk of a stream cut at {cut} decodes cleanly");
        assert!(last.duration > 0 && last.duration <= 2 * CLOCK, "{}", last.duration);
    }
}

fn make(dir: &Path, name: &str, extra: &str) -> Vec<u8> {
    let args = format!(
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=sample_rate=48000 -t 6 \
         -c:v libx264 -preset ultrafast -g 25 -c:a aac {extra}"
    );
    std::fs::read(encode(dir, name, &args)).expect("source")
}

#[test]
fn a_timestamp_jump_is_flagged_on_the_next_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = make(dir.path(), "a.ts", "");
    // The same program 100 s later, as a publisher restarting its encoder sends it.
    bytes.extend(make(dir.path(), "b.ts", "-output_ts_offset 100"));
    let chunks = cut_stream(&bytes, 2 * CLOCK);
    let flagged: Vec<usize> = chunks.iter().enumerate().filter(|(_, c)| c.discontinuity).map(|(i, _)| i).collect();
    assert_eq!(flagged, vec![0, 3], "the first chunk and the first after the jump: {:?}", durations(&chunks));
    // The chunk before the jump ends with its own last frame, not at the far side of the jump.
    assert!(chunks[2].duration <= 2 * CLOCK, "{}", chunks[2].duration);
    assert!(chunks[3].first_pts.abs_diff(chunks[0].first_pts + 100 * CLOCK) < CLOCK / 10, "{}", chunks[3].first_pts);
}

#[test]
fn lost_packets_are_flagged_on_the_next_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = make(dir.path(), "a.ts", "");
    // Drop ten packets of the video PID about 3 s in: the continuity counter skips.
    let video_pid = 0x100;
    let start = bytes.len() / 2 / 188 * 188;
    let mut kept = bytes[..start].to_vec();
    let mut dropped = 0;
    for packet in bytes[start..].chunks(188) {
        if dropped < 10 && ladder_media::ts::pid(packet) == video_pid && !ladder_media::ts::unit_start(packet) {
            dropped += 1;
            continue;
        }
        kept.extend_from_slice(packet);
    }
    assert_eq!(dropped, 10);
    let chunks = cut_stream(&kept, 2 * CLOCK);
    let flagged: Vec<usize> = chunks.iter().enumerate().filter(|(_, c)| c.discontinuity).map(|(i, _)| i).collect();
    assert_eq!(flagged.len(), 2, "the first chunk and the one after the loss: {flagged:?}");
    assert!(flagged[1] >= 1);
}

/// A chunker resumed from any chunk's checkpoint cuts exactly the chunks the original cut after it, whatever
/// piece sizes the input comes in: what lets another segmenter take a stream over without cutting anything twice.
#[test]
fn a_resumed_chunker_cuts_the_same_chunks_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A timestamp jump in the middle (two files joined), B-frames, AAC: the state a resume must carry.
    let first = encode(
        dir.path(),
        "a.ts",
        "-f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 7 \
         -c:v libx264 -preset ultrafast -bf 2 -g 30 -keyint_min 30 -sc_threshold 0 -c:a aac",
    );
    let second = encode(
        dir.path(),
        "b.ts",
        "-f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=660:sample_rate=48000 -t 5 \
         -c:v libx264 -preset ultrafast -bf 2 -g 30 -keyint_min 30 -sc_threshold 0 -c:a aac \
         -output_ts_offset 500",
    );
    let mut bytes = std::fs::read(&first).expect("a");
    bytes.extend(std::fs::read(&second).expect("b"));
    let chunks = cut_stream(&bytes, 2 * CLOCK);
    assert!(chunks.len() >= 6, "{} chunks", chunks.len());
    assert!(chunks.iter().skip(1).any(|c| c.discontinuity), "the join is a discontinuity");
    assert!(chunks.last().is_some_and(|c| c.next.is_none()), "the last chunk has nothing after it");

    for (k, chunk) in chunks.iter().enumerate().take(chunks.len() - 1) {
        let resume = chunk.next.clone().expect("a chunk followed by another says where it starts");
        assert_eq!(resume.input_offset, chunk.input_end);
        let mut resumed = Chunker::resume(2 * CLOCK, resume);
        let mut again = Vec::new();
        // Other piece sizes than the original run.
        for piece in bytes[chunk.input_end as usize..].chunks(1316 * 7 + 13 * k) {
            again.extend(resumed.push(piece).expect("a valid stream"));
        }
        again.extend(resumed.finish());
        let expected = &chunks[k + 1..];
        assert_eq!(again.len(), expected.len(), "resumed after chunk {k}");
        for (a, b) in again.iter().zip(expected) {
            assert!(a == b, "resumed after chunk {k}: chunk at pts {} differs", b.first_pts);
        }
    }
}

#[test]
fn a_source_without_keyframes_after_the_first_is_refused_not_buffered() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One IDR, then 70 s of P-frames: the chunk would never end.
    let source = encode(
        dir.path(),
        "one-idr.ts",
        "-f lavfi -i testsrc2=size=160x90:rate=10 -t 70 -c:v libx264 -preset ultrafast -g 100000 \
         -keyint_min 100000 -sc_threshold 0",
    );
    let bytes = std::fs::read(&source).expect("source");
    let mut chunker = Chunker::new(2 * CLOCK);
    let error = bytes.chunks(1316).find_map(|piece| chunker.push(piece).err()).expect("refused");
    assert!(matches!(error, ladder_media::MediaError::KeyframeInterval { .. }), "{error}");
    assert!(error.to_string().contains("keyframe interval"), "{error}");
}

/// While a chunk is being cut, its bytes so far are a prefix of the finished chunk, and every chunk is
/// announced as started with the state a resumed chunker needs to cut it: what lets a transcoder start on a
/// chunk with its first bytes, reading the raw stream itself from where the chunk begins.
#[test]
fn a_growing_chunk_is_a_prefix_of_the_finished_one_and_each_start_resumes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = make(dir.path(), "a.ts", "-bf 2");
    let mut chunker = Chunker::new(2 * CLOCK);
    let (mut chunks, mut starts, mut prefixes) = (Vec::new(), Vec::new(), Vec::<Vec<u8>>::new());
    let mut settled: Vec<(usize, Vec<u8>)> = Vec::new();
    for piece in bytes.chunks(1316 * 5 + 7) {
        let done = chunker.push(piece).expect("a valid stream");
        starts.extend(chunker.take_started());
        for chunk in done {
            chunks.push(chunk);
        }
        if prefixes.len() <= chunks.len() {
            prefixes.resize(chunks.len() + 1, Vec::new());
        }
        prefixes[chunks.len()] = chunker.growing().to_vec();
        settled.push((chunks.len(), chunker.settled().to_vec()));
    }
    chunks.extend(chunker.finish());
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert_eq!(starts.len(), chunks.len(), "one start per chunk");
    // What is settled stays in the chunk, the last one included (the stream ends in the middle of a frame).
    for (i, settled) in &settled {
        assert!(chunks[*i].data.starts_with(settled), "chunk {i} keeps what was settled");
        assert!(settled.len() < chunks[*i].data.len() || settled.is_empty(), "chunk {i}: its last frame waits");
    }
    for (i, (chunk, start)) in chunks.iter().zip(&starts).enumerate() {
        assert!(!prefixes[i].is_empty(), "chunk {i} was seen growing");
        // The last one may lose the packets of a PES packet the stream ended in the middle of (`finish`).
        if i + 1 < chunks.len() {
            assert!(chunk.data.starts_with(&prefixes[i]), "chunk {i} ends as it grew");
        }
        assert_eq!((start.first_pts, start.discontinuity), (chunk.first_pts, chunk.discontinuity), "chunk {i}");
        assert_eq!((start.width, start.height), (chunk.width, chunk.height));
        if i > 0 {
            assert_eq!(Some(&start.resume), chunks[i - 1].next.as_ref(), "chunk {i} starts where {} ended", i - 1);
        }
        let mut resumed = Chunker::resume(2 * CLOCK, start.resume.clone());
        let mut again = Vec::new();
        for piece in bytes[start.resume.input_offset as usize..].chunks(4096) {
            again.extend(resumed.push(piece).expect("a valid stream"));
        }
        again.extend(resumed.finish());
        assert!(again.first() == Some(chunk), "resumed at its start, chunk {i} is cut the same");
    }
}
