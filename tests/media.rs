//! Media correctness across many kinds of real source, end to end through the real services: timestamps
//! continuous across chunk boundaries in every rendition, an IDR at every chunk start, capped bitrates, and
//! the A/V offset of the source kept. Every source is made by ffmpeg here and published over SRT.

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use support::{eventually, run, variant_names, Stack};

const CLOCK: f64 = 90_000.0;

/// A source to publish: ffmpeg input and encoding options.
struct Source {
    name: &'static str,
    size: &'static str,
    rate: &'static str,
    /// Extra x264 options (B-frames, GOP).
    video: &'static str,
    /// `None`: no audio at all.
    audio: Option<(u32, u32)>,
    bitrate: &'static str,
    /// Extra output options, such as a timestamp offset.
    extra: &'static str,
}

const SECONDS: u32 = 9;

fn sources() -> Vec<Source> {
    let s = |name, size, rate, video, audio, extra| Source { name, size, rate, video, audio, bitrate: "1500k", extra };
    vec![
        s("fps25", "640x360", "25", "-bf 2 -g 50 -keyint_min 50", Some((48000, 2)), ""),
        s("fps2997", "640x360", "30000/1001", "-bf 0 -g 60 -keyint_min 60", Some((48000, 2)), ""),
        s("fps30", "640x360", "30", "-bf 3 -g 30 -keyint_min 30", Some((44100, 2)), ""),
        s("fps50", "640x360", "50", "-bf 2 -g 100 -keyint_min 100", Some((48000, 1)), ""),
        s("fps5994", "640x360", "60000/1001", "-bf 2 -g 120 -keyint_min 120", Some((44100, 1)), ""),
        s("gop4", "640x360", "30", "-bf 2 -g 120 -keyint_min 120", Some((48000, 2)), ""),
        s("irregular", "640x360", "30", "-bf 2 -g 300 -force_key_frames 0,1.3,2.1,4.7,5.2,7.9", Some((48000, 2)), ""),
        s("silent", "640x360", "30", "-bf 2 -g 60 -keyint_min 60", None, ""),
        // 33-bit PTS wraps about 3 s in: 2^33 / 90 kHz = 95443.7 s.
        s("wrap", "640x360", "30", "-bf 2 -g 60 -keyint_min 60", Some((48000, 2)), "-output_ts_offset 95440.5"),
        Source {
            name: "hd60",
            size: "1920x1080",
            rate: "60",
            video: "-bf 2 -g 120 -keyint_min 120",
            audio: Some((48000, 2)),
            bitrate: "6000k",
            extra: "",
        },
    ]
}

/// Makes the source file: a moving pattern with temporal noise, so that every rendition needs its whole
/// bitrate, and a tone.
fn make_source(dir: &Path, source: &Source) -> PathBuf {
    let path = dir.join(format!("{}.ts", source.name));
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into(), "-y".into()];
    args.extend(["-f", "lavfi", "-i"].map(String::from));
    args.push(format!("testsrc2=size={}:rate={},noise=alls=12:allf=t", source.size, source.rate));
    if let Some((rate, channels)) = source.audio {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!(
            "sine=frequency=440:sample_rate={rate},aformat=channel_layouts={}",
            if channels == 1 { "mono" } else { "stereo" }
        ));
    }
    args.extend(["-t".into(), SECONDS.to_string()]);
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v"].map(String::from));
    args.push(source.bitrate.into());
    args.extend(source.video.split_whitespace().map(String::from));
    if source.video.contains("-g ") && !source.video.contains("force_key_frames") {
        args.extend(["-sc_threshold", "0"].map(String::from));
    }
    if source.audio.is_some() {
        args.extend(["-c:a", "aac", "-b:a", "96k"].map(String::from));
    }
    args.extend(source.extra.split_whitespace().map(String::from));
    args.extend(["-f".into(), "mpegts".into(), path.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = run("ffmpeg", &args);
    assert!(ok, "making source {}: {stderr}", source.name);
    path
}

/// Publishes a file over SRT in real time.
fn publish_file(stack: &Stack, path: &Path, stream: &str) -> std::process::Child {
    std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i"])
        .arg(path)
        .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
        .arg(stack.srt_url(stream))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg runs")
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone)]
struct Packet {
    video: bool,
    pts: i64,
    duration: i64,
    size: u64,
    key: bool,
}

fn packets(path: &Path) -> Vec<Packet> {
    let path = path.to_str().expect("utf-8 path");
    let (ok, out, err) = run(
        "ffprobe",
        &["-v", "error", "-show_entries", "packet=codec_type,pts,duration,size,flags", "-of", "csv=p=0", path],
    );
    assert!(ok, "ffprobe {path}: {err}");
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            Some(Packet {
                video: *f.first()? == "video",
                pts: f.get(1)?.parse().ok()?,
                duration: f.get(2)?.parse().unwrap_or(0),
                size: f.get(3)?.parse().ok()?,
                key: f.get(4)?.contains('K'),
            })
        })
        .collect()
}

/// Unwraps 33-bit timestamps of consecutive chunks onto one timeline.
fn unwrap(values: &mut [i64], reference: i64) {
    const WRAP: i64 = 1 << 33;
    for v in values.iter_mut() {
        while *v - reference < -WRAP / 2 {
            *v += WRAP;
        }
        while *v - reference > WRAP / 2 {
            *v -= WRAP;
        }
    }
}

struct ChunkStats {
    video_pts: Vec<i64>,
    audio_pts: Vec<i64>,
    audio_end: Option<i64>,
    video_bytes: u64,
    keyframes: usize,
    starts_with_idr: bool,
}

fn chunk_stats(path: &Path, reference: i64) -> ChunkStats {
    let packets = packets(path);
    let mut video_pts: Vec<i64> = packets.iter().filter(|p| p.video).map(|p| p.pts).collect();
    let mut audio: Vec<(i64, i64)> = packets.iter().filter(|p| !p.video).map(|p| (p.pts, p.duration)).collect();
    unwrap(&mut video_pts, reference);
    let mut audio_pts: Vec<i64> = audio.iter().map(|a| a.0).collect();
    unwrap(&mut audio_pts, reference);
    for (a, pts) in audio.iter_mut().zip(&audio_pts) {
        a.0 = *pts;
    }
    video_pts.sort_unstable();
    audio_pts.sort_unstable();
    let audio_end = audio.iter().map(|(pts, duration)| pts + duration).max();
    let data = std::fs::read(path).expect("chunk");
    let starts_with_idr = ladder_media::probe::probe(&data).ok().flatten().is_some_and(|p| p.starts_with_idr);
    ChunkStats {
        video_pts,
        audio_pts,
        audio_end,
        video_bytes: packets.iter().filter(|p| p.video).map(|p| p.size).sum(),
        keyframes: packets.iter().filter(|p| p.video && p.key).count(),
        starts_with_idr,
    }
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The session directory of a stream in the shared media storage.
fn session_dir(stack: &Stack, stream: &str) -> PathBuf {
    let root = stack.data().join("media/live").join(stream);
    chunk_files(&root).into_iter().next_back().unwrap_or_else(|| panic!("no session stored for {stream}"))
}

fn target_bitrate(rendition: &str) -> f64 {
    match rendition {
        "720p" => 3_000_000.0,
        "480p" => 1_500_000.0,
        _ => 800_000.0,
    }
}

#[test]
fn every_source_keeps_continuous_timestamps_idrs_and_bitrates() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = sources();
    let files: Vec<PathBuf> = sources.iter().map(|s| make_source(dir.path(), s)).collect();

    // Published two at a time: real time, on a machine with two cores that also transcodes.
    for pair in sources.iter().zip(&files).collect::<Vec<_>>().chunks(2) {
        let mut publishers: Vec<_> = pair.iter().map(|(s, f)| publish_file(&stack, f, s.name)).collect();
        for p in &mut publishers {
            assert!(p.wait().expect("ffmpeg").success(), "publishing failed");
        }
    }

    let mut report = Vec::new();
    for source in &sources {
        let stream = source.name;
        eventually(Duration::from_secs(240), &format!("{stream} to end"), &stack, || {
            let (_, master) = stack.get(&format!("/live/{stream}/master.m3u8"));
            let variants = variant_names(&master);
            let ended = !variants.is_empty()
                && variants.iter().all(|v| stack.get(&format!("/live/{stream}/{v}.m3u8")).1.contains("#EXT-X-ENDLIST"));
            ended.then_some(())
        });
        let session = session_dir(&stack, stream);
        let source_chunks = chunk_files(&session.join("source"));
        assert!(source_chunks.len() >= 3, "{stream}: {} source chunks", source_chunks.len());
        let first_source = packets(&source_chunks[0]);
        let reference = first_source.iter().find(|p| p.video).map(|p| p.pts).expect("video");
        let source_stats: Vec<ChunkStats> = source_chunks.iter().map(|c| chunk_stats(c, reference)).collect();
        let source_frame = source_stats[0].video_pts.windows(2).map(|w| w[1] - w[0]).min().expect("frames");

        let (_, master) = stack.get(&format!("/live/{stream}/master.m3u8"));
        let renditions = variant_names(&master);
        let expected: &[&str] = if source.size == "1920x1080" { &["360p", "480p", "720p"] } else { &["360p"] };
        assert_eq!(renditions, expected, "{stream}: renditions never upscale");

        for rendition in &renditions {
            let chunks = chunk_files(&session.join(rendition));
            assert_eq!(
                chunks.len(),
                source_chunks.len(),
                "{stream}/{rendition}: one chunk per source chunk\n{}",
                stack.logs()
            );
            let stats: Vec<ChunkStats> = chunks.iter().map(|c| chunk_stats(c, reference)).collect();
            // The frame-rate cap: 480p and below at most 30 fps, by keeping every n-th frame.
            let step = if source_frame < 2900 && rendition != "720p" { 2 } else { 1 };
            let frame = source_frame * step;
            let aac_frame = source.audio.map(|(rate, _)| (1024.0 * CLOCK / rate as f64).ceil() as i64);
            let mut bits = 0.0;
            let mut seconds = 0.0;
            for (i, (chunk, source_chunk)) in stats.iter().zip(&source_stats).enumerate() {
                let at = format!("{stream}/{rendition} chunk {i}");
                assert!(chunk.starts_with_idr, "{at} starts with an IDR");
                assert_eq!(chunk.keyframes, 1, "{at}: one keyframe, no scene cuts mid-chunk");
                assert_eq!(chunk.video_pts[0], source_chunk.video_pts[0], "{at} starts at its source's first PTS");
                let duration =
                    source_stats.get(i + 1).map_or(
                        (chunk.video_pts.last().expect("frames") + frame - chunk.video_pts[0]) as f64,
                        |next| (next.video_pts[0] - source_chunk.video_pts[0]) as f64,
                    ) / CLOCK;
                if let Some(next) = stats.get(i + 1) {
                    let gap = next.video_pts[0] - (chunk.video_pts.last().expect("frames") + frame);
                    assert!(gap.abs() <= frame, "{at}: video continues into the next chunk within a frame ({gap})");
                    if let (Some(end), Some(next_audio), Some(aac)) =
                        (chunk.audio_end, next.audio_pts.first(), aac_frame)
                    {
                        let gap = next_audio - end;
                        assert!(gap.abs() <= aac, "{at}: audio continues within one AAC frame ({gap} ticks)");
                    }
                    let chunk_bps = chunk.video_bytes as f64 * 8.0 / duration;
                    assert!(
                        chunk_bps <= 1.5 * target_bitrate(rendition),
                        "{at}: {chunk_bps:.0} b/s over 1.5x the target"
                    );
                }
                if let (Some(a), Some(source_a)) = (chunk.audio_pts.first(), source_chunk.audio_pts.first()) {
                    let offset = chunk.video_pts[0] - a;
                    let source_offset = source_chunk.video_pts[0] - source_a;
                    assert!(
                        (offset - source_offset).abs() <= frame,
                        "{at}: A/V offset {offset} vs source {source_offset}"
                    );
                }
                assert_eq!(chunk.audio_pts.is_empty(), source.audio.is_none(), "{at}: audio passes through");
                bits += chunk.video_bytes as f64 * 8.0;
                seconds += duration;
            }
            let average = bits / seconds;
            let target = target_bitrate(rendition);
            report.push(format!(
                "{stream}/{rendition}: {} chunks, {:.0} kb/s (target {:.0})",
                stats.len(),
                average / 1000.0,
                target / 1000.0
            ));
            assert!(
                (average - target).abs() <= 0.1 * target,
                "{stream}/{rendition}: average {average:.0} b/s within 10% of {target}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
