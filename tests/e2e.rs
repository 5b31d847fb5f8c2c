//! SRT in, HLS out: the five services as separate processes on a real nats-server, real ffmpeg publishers,
//! and ffmpeg as the HLS client.

mod support;

use std::time::Duration;

use support::{eventually, garage::Garage, parse_playlist, publish, run, video_pts, Stack, StackOptions};

/// Variant URIs of a master playlist, with their attribute lines.
fn variants(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXT-X-STREAM-INF:"))
        .map(|w| (w[0].to_string(), w[1].to_string()))
        .collect()
}

fn segment_uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(String::from).collect()
}

fn decode_errors(url: &str) -> Option<String> {
    let (ok, _, stderr) = run("ffmpeg", &["-hide_banner", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"]);
    (!ok || !stderr.trim().is_empty()).then_some(stderr)
}

/// A URI from a playlist as an absolute URL: segments are on the manifest server or at a public base URL.
fn absolute(stack: &Stack, uri: &str) -> String {
    if uri.starts_with("http") {
        uri.to_string()
    } else {
        stack.url(uri)
    }
}

fn fetch(url: &str) -> Vec<u8> {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}")).body_mut().read_to_vec().expect("body")
}

fn decode_cleanly(stack: &Stack, url: &str) {
    if let Some(stderr) = decode_errors(url) {
        // Name the segments that fail on their own, to tell a bad chunk from a bad playlist.
        let mut bad = Vec::new();
        let (_, body) = stack.get(url.strip_prefix(&stack.url("")).unwrap_or(url));
        for line in segment_uris(&body).iter().filter(|l| l.ends_with(".ts")) {
            if let Some(e) = decode_errors(&absolute(stack, line)) {
                bad.push(format!("{line}: {e}"));
            }
        }
        panic!("ffmpeg decoding {url}: {stderr}\nsegments failing alone:\n{}\n{}", bad.join("\n"), stack.logs());
    }
    let (ok, streams, stderr) =
        run("ffprobe", &["-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", url]);
    assert!(ok, "ffprobe {url}: {stderr}");
    assert!(streams.contains("video") && streams.contains("audio"), "{url} has video and audio: {streams}");
}

#[test]
fn two_publishers_over_srt_become_live_abr_hls() {
    let stack = Stack::start();
    srt_to_hls(&stack, "/media/");
}

/// The same run with media in a real S3 server (Garage): chunks and renditions go to the bucket, with their
/// content type, and playlists point players straight at the bucket's website endpoint, as they would at a
/// CDN. The manifest's own `/media/` proxy reads the same objects back from S3.
#[test]
fn two_publishers_over_srt_become_live_abr_hls_on_s3_storage() {
    let garage = Garage::start();
    let stack = Stack::start_with(StackOptions {
        storage: Some(format!("s3://{}", support::garage::BUCKET)),
        storage_env: garage.env(),
        media_base_url: Some(garage.web_url()),
        ..StackOptions::default()
    });
    let base = format!("{}/", garage.web_url());
    srt_to_hls(&stack, &base);

    let storage = ladder_storage::Storage::open("s3://ladder", &garage.storage_options()).expect("s3 storage");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_, media) = stack.get("/live/cam1/720p.m3u8");
    let uri = segment_uris(&media).into_iter().next().expect("a segment");
    let key = uri.strip_prefix(&base).expect("segment URIs start with the public base URL").to_string();
    let content_type = runtime.block_on(storage.stored_content_type(&key)).expect("head");
    assert_eq!(content_type.as_deref(), Some("video/mp2t"), "{key}");
    assert_eq!(fetch(&stack.url(&format!("/media/{key}"))), fetch(&uri), "the /media/ proxy serves the S3 object");
    let sources = runtime.block_on(storage.list("live/cam1/")).expect("list");
    let source_chunks = sources.iter().filter(|k| k.contains("/source/")).count();
    assert!(source_chunks >= 10, "source chunks are in the bucket: {sources:?}");
    assert!(!std::path::Path::new(&stack.data().join("media")).exists(), "nothing was written to local disk");
}

/// Two publishers in, ABR HLS out; `media_base` is where playlists point segment URIs.
fn srt_to_hls(stack: &Stack, media_base: &str) {
    let events = stack.watch_events(&["--stream", "cam1", "--all"]);

    // Both streamid syntaxes, at the same time, at different sizes and frame rates.
    let cam1 = publish(&stack.srt_url("#!::r=cam1,m=publish"), "1280x720", 25, 22, 440);
    let cam2 = publish(&stack.srt_url("cam2"), "640x360", 30, 22, 880);

    // While live: every rendition listed, every media playlist a sliding window of at least 4 segments.
    let master = eventually(Duration::from_secs(60), "cam1 live with 3 renditions of 4+ segments", stack, || {
        let (status, master) = stack.get("/live/cam1/master.m3u8");
        if status != 200 || variants(&master).len() < 3 {
            return None;
        }
        let full = variants(&master).iter().all(|(_, uri)| {
            let (_, playlist) = stack.get(&format!("/live/cam1/{uri}"));
            segment_uris(&playlist).len() >= 4 && !playlist.contains("#EXT-X-ENDLIST")
        });
        full.then_some(master)
    });
    assert!(master.starts_with("#EXTM3U\n"), "{master}");
    assert_eq!(parse_playlist(stack, &master)["variants"].as_array().map(Vec::len), Some(3), "{master}");
    let cam1_variants = variants(&master);
    let uris: Vec<&str> = cam1_variants.iter().map(|(_, uri)| uri.as_str()).collect();
    assert_eq!(uris, vec!["360p.m3u8", "480p.m3u8", "720p.m3u8"], "{master}");
    for (attributes, uri) in &cam1_variants {
        assert!(attributes.contains("BANDWIDTH=") && attributes.contains("AVERAGE-BANDWIDTH="), "{attributes}");
        // The codecs are read from the encoded stream: avc1.PPCCLL (profile, constraints, level), AAC-LC.
        let codecs = attributes.split("CODECS=\"").nth(1).and_then(|c| c.split('"').next()).unwrap_or_default();
        let (video, audio) = codecs.split_once(',').unwrap_or_default();
        assert!(video.len() == 11 && video.starts_with("avc1.") && audio == "mp4a.40.2", "{attributes}");
        let height = uri.trim_end_matches("p.m3u8");
        assert!(attributes.contains(&format!("x{height},")), "{uri} has its height: {attributes}");
        let (_, playlist) = stack.get(&format!("/live/cam1/{uri}"));
        parse_playlist(stack, &playlist);
        assert!(playlist.contains("#EXT-X-TARGETDURATION:2\n"), "{playlist}");
        assert!(playlist.lines().filter(|l| l.starts_with("#EXTINF:")).all(|l| l == "#EXTINF:2.000000,"), "{playlist}");
        // Six segments, and LL-HLS: up to four parts of each of the last three segments and of the one in
        // progress, the preload hint and two rendition reports.
        let window = 6 * (130 + media_base.len()) + 17 * (110 + media_base.len()) + 600;
        assert!(playlist.len() <= window, "a live window, not the whole stream: {playlist}");
    }

    let cam1_ended = cam1.finish();
    cam2.finish();

    // `ladder events` showed chunk and rendition events while the stream was still being published.
    let seen = events.snapshot();
    for kind in ["chunk.uploaded.cam1", "rendition.ready.cam1"] {
        assert!(
            seen.iter().any(|(at, line)| line.starts_with(kind) && *at < cam1_ended),
            "ladder events printed {kind} live; saw:\n{}",
            seen.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(seen.iter().all(|(_, line)| line.contains(".cam1 ")), "--stream filters to cam1");

    // Once both sessions are over, every playlist ends, and ffmpeg decodes all of it (the DVR playlists list
    // every segment) without one error.
    for stream in ["cam1", "cam2"] {
        eventually(Duration::from_secs(90), &format!("{stream} playlists to end"), stack, || {
            let (_, master) = stack.get(&format!("/live/{stream}/master.m3u8"));
            let ended = variants(&master)
                .iter()
                .all(|(_, uri)| stack.get(&format!("/live/{stream}/{uri}")).1.contains("#EXT-X-ENDLIST"));
            (ended && !variants(&master).is_empty()).then_some(())
        });
        let (_, master) = stack.get(&format!("/dvr/{stream}/master.m3u8"));
        parse_playlist(stack, &master);
        for (_, uri) in variants(&master) {
            let playlist = stack.get(&format!("/dvr/{stream}/{uri}")).1;
            assert_eq!(parse_playlist(stack, &playlist)["endlist"], true, "{playlist}");
            decode_cleanly(stack, &stack.url(&format!("/dvr/{stream}/{uri}")));
        }
        decode_cleanly(stack, &stack.url(&format!("/dvr/{stream}/master.m3u8")));
    }

    // The second publisher has its own playlists: a 360p source gets only the 360p rendition, and nothing
    // of cam1 leaks into it.
    let (_, cam2_master) = stack.get("/live/cam2/master.m3u8");
    assert_eq!(variants(&cam2_master).len(), 1, "{cam2_master}");
    assert!(cam2_master.contains("RESOLUTION=640x360"), "{cam2_master}");
    let (_, cam2_media) = stack.get("/dvr/cam2/360p.m3u8");
    let cam2_prefix = format!("{media_base}live/cam2/");
    assert!(segment_uris(&cam2_media).iter().all(|uri| uri.starts_with(&cam2_prefix)), "{cam2_media}");
    assert!(segment_uris(&cam2_media).len() >= 10, "22 s of cam2 in 2 s chunks: {cam2_media}");

    // Timestamps run on across chunk boundaries: each 720p segment starts one frame (3600 ticks at 25 fps)
    // after the previous one's last frame.
    let (_, media) = stack.get("/dvr/cam1/720p.m3u8");
    let segments = segment_uris(&media);
    assert!(segments.len() >= 10, "22 s in 2 s chunks: {media}");
    let mut previous_last: Option<i64> = None;
    for (i, uri) in segments.iter().enumerate() {
        let path = stack.data().join(format!("segment-{i}.ts"));
        std::fs::write(&path, fetch(&absolute(stack, uri))).expect("write segment");
        let pts = video_pts(&path);
        assert!(!pts.is_empty(), "{uri} has video");
        if let Some(last) = previous_last {
            assert_eq!(pts[0] - last, 3600, "segment {i} continues segment {}", i - 1);
        }
        previous_last = pts.last().copied();
    }

    assert_eq!(stack.get("/live/nope/master.m3u8").0, 404);
    assert_eq!(stack.get("/live/cam1/1080p.m3u8").0, 404);
}
