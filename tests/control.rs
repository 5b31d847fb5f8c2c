//! Streams ladder cannot handle are refused with a clear event while a healthy stream carries on; a
//! stream's ladder changes live, through an event, without restarting anything.

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use support::{eventually, publish, run, variant_names, Stack, LADDER};

/// An ffmpeg publishing `input` arguments, encoded with `codec` arguments, over SRT.
fn publish_with(stack: &Stack, stream: &str, input: &[&str], codec: &[&str]) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(input)
        .args(codec)
        .args(["-f", "mpegts"])
        .arg(stack.srt_url(stream))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg runs")
}

#[test]
fn unsupported_streams_fail_clearly_and_a_healthy_one_is_untouched() {
    let stack = Stack::start();
    let events = stack.watch_events(&["--all", "--json"]);
    let healthy = publish(&stack.srt_url("healthy"), "640x360", 25, 14, 440);

    let mut hevc = publish_with(
        &stack,
        "hevc",
        &["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "6"],
        &["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
    );
    let mut novideo = publish_with(&stack, "novideo", &["-f", "lavfi", "-i", "sine", "-t", "6"], &["-c:a", "aac"]);
    // Random bytes straight into SRT: no transport stream at all.
    let garbage: Vec<u8> = (0..4_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let garbage_file = stack.data().join("garbage.bin");
    std::fs::write(&garbage_file, garbage).expect("write garbage");
    let mut garbage = Command::new("sh")
        .arg("-c")
        // Through a pipe: srt-live-transmit cannot poll a regular file on stdin.
        .arg(format!(
            "cat '{}' | exec srt-live-transmit -q -a:no file://con 'srt://127.0.0.1:{}?streamid=garbage'",
            garbage_file.display(),
            stack.srt_port
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit runs (make test installs srt-tools)");

    let failures = eventually(Duration::from_secs(60), "three stream.failed events", &stack, || {
        let failed: Vec<String> = events
            .snapshot()
            .into_iter()
            .map(|(_, line)| line)
            .filter(|line| line.contains("\"subject\":\"stream.failed."))
            .collect();
        (failed.len() >= 3).then_some(failed)
    });
    let reason = |stream: &str| {
        failures.iter().find(|l| l.contains(&format!("\"stream.failed.{stream}\""))).cloned().unwrap_or_default()
    };
    assert!(reason("hevc").contains("unsupported video codec HEVC (ladder takes H.264)"), "{failures:?}");
    assert!(reason("novideo").contains("the program has no video stream (PMT lists AAC)"), "{failures:?}");
    assert!(reason("garbage").contains("not an MPEG transport stream"), "{failures:?}");
    let segmenter_log = std::fs::read_to_string(stack.data().join("segmenter.log")).unwrap_or_default();
    for stream in ["hevc", "novideo", "garbage"] {
        assert!(
            segmenter_log.lines().any(|l| l.contains("stream refused") && l.contains(&format!("stream={stream}"))),
            "the segmenter log names why {stream} was refused:\n{segmenter_log}"
        );
        assert_eq!(stack.get(&format!("/live/{stream}/master.m3u8")).0, 404, "{stream} has no playlists");
    }
    for child in [&mut hevc, &mut novideo] {
        let _ = child.wait();
    }
    let _ = garbage.kill();
    let _ = garbage.wait();

    // The healthy stream, published at the same time, is whole: every chunk listed, and it decodes cleanly.
    healthy.finish();
    eventually(Duration::from_secs(60), "healthy playlist to end", &stack, || {
        let (_, playlist) = stack.get("/live/healthy/360p.m3u8");
        playlist.contains("#EXT-X-ENDLIST").then_some(())
    });
    let (_, playlist) = stack.get("/dvr/healthy/360p.m3u8");
    assert_eq!(playlist.matches("#EXTINF:").count(), 7, "14 s in 2 s chunks: {playlist}");
    let url = stack.url("/dvr/healthy/master.m3u8");
    let (ok, _, stderr) = run("ffmpeg", &["-hide_banner", "-v", "error", "-i", &url, "-map", "0", "-f", "null", "-"]);
    assert!(ok && stderr.trim().is_empty(), "healthy stream decodes: {stderr}");
}

/// `ladder stream <args>` against the stack.
fn ladder_command(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    stack.ladder(&[&["stream"], args].concat())
}

#[test]
fn a_ladder_change_reaches_the_master_playlist_within_two_chunks() {
    let stack = Stack::start();
    let (code, shown, _) = ladder_command(&stack, &["show", "cam"]);
    assert_eq!(code, 0);
    assert!(shown.contains("no ladder of its own") && shown.contains("name = \"720p\""), "{shown}");

    // An invalid ladder is refused, naming the field, and changes nothing.
    let bad = stack.data().join("bad.toml");
    std::fs::write(&bad, "[[rendition]]\nname = \"x\"\nheight = 241\nbitrate = 300000\n").expect("write");
    let (code, _, stderr) = ladder_command(&stack, &["set-ladder", "cam", bad.to_str().expect("path")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("rendition[0].height: 241 must be even"), "{stderr}");

    let publisher = publish(&stack.srt_url("cam"), "640x360", 30, 24, 440);
    let session = eventually(Duration::from_secs(60), "cam live with 3 chunks", &stack, || {
        let (_, playlist) = stack.get("/live/cam/360p.m3u8");
        let root = stack.data().join("media/live/cam");
        let session = std::fs::read_dir(&root).ok()?.filter_map(|e| e.ok()).next()?.path();
        (playlist.matches("#EXTINF").count() >= 3).then_some(session)
    });
    assert_eq!(variant_names(&stack.get("/live/cam/master.m3u8").1), vec!["360p"]);

    let ladder = stack.data().join("ladder.toml");
    std::fs::write(
        &ladder,
        "[[rendition]]\nname = \"360p\"\nheight = 360\nbitrate = 700000\n\n\
         [[rendition]]\nname = \"240p\"\nheight = 240\nbitrate = 300000\nmax_fps = 15\n\
         audio = \"aac\"\naudio_bitrate = 64000\n",
    )
    .expect("write ladder");
    let chunks_before = std::fs::read_dir(session.join("source")).expect("source chunks").count() as u64;
    let (code, out, stderr) = ladder_command(&stack, &["set-ladder", "cam", ladder.to_str().expect("path")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("2 renditions"), "{out}");

    let master = eventually(Duration::from_secs(30), "240p in the master playlist", &stack, || {
        let (_, master) = stack.get("/live/cam/master.m3u8");
        variant_names(&master).contains(&"240p".to_string()).then_some(master)
    });
    assert_eq!(variant_names(&master), vec!["240p", "360p"], "{master}");
    assert!(master.contains("RESOLUTION=426x240"), "{master}");
    // The first 240p chunk is at most two chunks after the last one cut before the change.
    let first_240p = std::fs::read_dir(session.join("240p"))
        .expect("240p chunks")
        .filter_map(|e| e.ok()?.file_name().to_str()?.trim_end_matches(".ts").parse::<u64>().ok())
        .min()
        .expect("a 240p chunk");
    assert!(first_240p <= chunks_before + 1, "first 240p chunk {first_240p}, {chunks_before} chunks cut before");

    let (_, shown, _) = ladder_command(&stack, &["show", "cam"]);
    assert!(shown.contains("name = \"240p\"") && shown.contains("max_fps = 15.0"), "{shown}");
    publisher.finish();

    // The re-encoded audio of 240p runs on from chunk to chunk: no overlap, no gap over one AAC frame
    // (1920 ticks at 48 kHz), and each chunk's audio starts where its source's does.
    eventually(Duration::from_secs(60), "240p to end", &stack, || {
        stack.get("/live/cam/240p.m3u8").1.contains("#EXT-X-ENDLIST").then_some(())
    });
    let audio_pts = |path: &std::path::Path| -> Vec<i64> {
        let path = path.to_str().expect("utf-8 path");
        let args = ["-v", "error", "-select_streams", "a", "-show_entries", "packet=pts", "-of", "csv=p=0", path];
        let (ok, out, err) = run("ffprobe", &args);
        assert!(ok, "{err}");
        out.lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect()
    };
    let mut chunks: Vec<_> =
        std::fs::read_dir(session.join("240p")).expect("240p").filter_map(|e| e.ok().map(|e| e.path())).collect();
    chunks.sort();
    assert!(chunks.len() >= 4, "{chunks:?}");
    for pair in chunks.windows(2) {
        let (previous, next) = (audio_pts(&pair[0]), audio_pts(&pair[1]));
        let end = previous.last().expect("audio") + 1920;
        let gap = next[0] - end;
        assert!((0..=1920).contains(&gap.abs()) && next[0] > *previous.last().expect("audio"), "{pair:?}: gap {gap}");
        let source = session.join("source").join(pair[1].file_name().expect("name"));
        let source_first = audio_pts(&source)[0];
        assert!((next[0] - source_first).abs() <= 1920, "{pair:?} starts with its source ({source_first})");
        let (ok, _, stderr) = run("ffmpeg", &["-v", "error", "-i", pair[1].to_str().expect("path"), "-f", "null", "-"]);
        assert!(ok && stderr.trim().is_empty(), "{stderr}");
    }
}

/// `ladder chunk` cuts a file as the segmenter would: chunks at IDRs, each playable on its own; and names what
/// is wrong with a file it cannot cut.
#[test]
fn ladder_chunk_cuts_a_file_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.ts");
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            "7",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            input.to_str().expect("path"),
        ],
    );
    assert!(ok, "{err}");
    let out = dir.path().join("chunks");
    let args = ["chunk", input.to_str().expect("path"), "--out", out.to_str().expect("path")];
    let (ok, stdout, stderr) = run(LADDER, &args);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("chunk ")).count(), 4, "7 s in 2 s chunks: {stdout}");
    assert!(stdout.contains("dur=2.000s") && stdout.contains("cut "), "{stdout}");
    for n in 0..4 {
        let chunk = out.join(format!("{n:08}.ts"));
        let (ok, _, err) = run("ffmpeg", &["-v", "error", "-i", chunk.to_str().expect("path"), "-f", "null", "-"]);
        assert!(ok && err.trim().is_empty(), "chunk {n} decodes alone: {err}");
    }
    let garbage = dir.path().join("garbage.ts");
    std::fs::write(&garbage, vec![7u8; 100_000]).expect("write");
    let (ok, _, stderr) = run(LADDER, &["chunk", garbage.to_str().expect("path")]);
    assert!(!ok && stderr.contains("not an MPEG transport stream"), "{stderr}");
}
