//! The HLS a player sees, on real streams: a publisher that drops and reconnects under the same name, the end of
//! the stream after the grace period, DVR and clip playlists, and the HTTP caching headers. Every playlist
//! fetched is parsed by an independent HLS parser (the Python `m3u8` package, strictly: an unknown or
//! malformed line fails the test), and the checks read what that parser reports.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{eventually, parse_playlist, publish, republish, run, Stack, StackOptions};

fn get_parsed(stack: &Stack, path: &str) -> Value {
    let (status, body) = stack.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    parse_playlist(stack, &body)
}

fn segments(playlist: &Value) -> &Vec<Value> {
    playlist["segments"].as_array().expect("segments")
}

fn uri(segment: &Value) -> String {
    segment["uri"].as_str().expect("uri").to_string()
}

/// Checks what every media playlist must satisfy: a target duration no segment exceeds (rounded), a date on
/// every segment, dates that advance with the durations within a session, independent segments.
fn check_media(playlist: &Value, path: &str) {
    assert_eq!(playlist["variant"], false, "{path}");
    let target = playlist["target_duration"].as_f64().expect("target duration");
    assert_eq!(playlist["independent_segments"], true, "{path}");
    let mut previous: Option<(f64, f64)> = None; // (date, duration)
    for segment in segments(playlist) {
        let duration = segment["duration"].as_f64().expect("duration");
        assert!(duration.round() <= target, "{path}: EXTINF {duration} over the target {target}");
        let date = segment["program_date_time"].as_str().unwrap_or_else(|| panic!("{path}: a date on every segment"));
        let date = date_seconds(date);
        if let (Some((before, before_duration)), false) = (previous, segment["discontinuity"] == true) {
            assert!((date - before - before_duration).abs() < 0.002, "{path}: dates follow the durations");
        }
        previous = Some((date, duration));
    }
}

/// Seconds since the epoch of an ISO 8601 date as the parser prints it (`2026-11-24T22:13:22.037000+00:00`).
fn date_seconds(date: &str) -> f64 {
    let (ok, out, err) = run("date", &["-u", "-d", date, "+%s.%N"]);
    assert!(ok, "{date}: {err}");
    out.trim().parse().expect("seconds")
}

#[test]
fn a_reconnect_continues_the_playlists_and_the_end_comes_after_the_grace_period() {
    let stack = Stack::start_with(StackOptions { end_grace: Some(8), ..StackOptions::default() });
    let url = stack.srt_url("cam");
    // Every URI ever listed keeps its media sequence number, and sequence numbers never go back.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_sequence = 0u64;
    let mut last_discontinuity_sequence = 0u64;
    let mut poll = |stack: &Stack| -> Value {
        let playlist = get_parsed(stack, "/live/cam/360p.m3u8");
        check_media(&playlist, "/live/cam/360p.m3u8");
        let sequence = playlist["media_sequence"].as_u64().expect("media sequence");
        let discontinuity_sequence = playlist["discontinuity_sequence"].as_u64().unwrap_or(0);
        assert!(sequence >= last_sequence, "media sequence went back: {sequence} < {last_sequence}");
        assert!(discontinuity_sequence >= last_discontinuity_sequence, "discontinuity sequence went back");
        for (i, segment) in segments(&playlist).iter().enumerate() {
            let msn = sequence + i as u64;
            if let Some(previous) = seen.insert(uri(segment), msn) {
                assert_eq!(previous, msn, "{} changed its media sequence number", uri(segment));
            }
        }
        (last_sequence, last_discontinuity_sequence) = (sequence, discontinuity_sequence);
        playlist
    };

    let mut first = publish(&url, "640x360", 25, 12, 440);
    eventually(Duration::from_secs(60), "the first session to be live", &stack, || {
        (stack.get("/live/cam/360p.m3u8").0 == 200).then_some(())
    });
    while !first.is_finished() {
        poll(&stack);
        std::thread::sleep(Duration::from_millis(500));
    }
    first.finish();
    // The publisher is back within the grace period: no ENDLIST in between.
    let mut second = republish(&url, "640x360", 25, 18, 880);
    let joined = eventually(Duration::from_secs(60), "the second session in the playlist", &stack, || {
        let playlist = poll(&stack);
        assert_eq!(playlist["endlist"], false, "the playlist ended during the grace period");
        segments(&playlist).iter().any(|s| s["discontinuity"] == true).then_some(playlist)
    });
    // The discontinuity is where the sessions meet.
    let at = segments(&joined).iter().position(|s| s["discontinuity"] == true).expect("a discontinuity");
    let (before, after) = (uri(&segments(&joined)[at - 1]), uri(&segments(&joined)[at]));
    assert_ne!(before.split('/').nth(4), after.split('/').nth(4), "{before} and {after} are different sessions");
    assert!(after.ends_with("/00000000.ts"), "the second session starts with its first chunk: {after}");
    // Playing on: once the join slides out of the window, the discontinuity sequence counts it.
    eventually(Duration::from_secs(60), "the join to slide out of the window", &stack, || {
        let playlist = poll(&stack);
        (playlist["discontinuity_sequence"].as_u64() == Some(1)).then_some(())
    });
    while !second.is_finished() {
        poll(&stack);
        std::thread::sleep(Duration::from_millis(500));
    }
    let gone = second.finish();

    // The end: not before the grace period, then EXT-X-ENDLIST on live and DVR playlists.
    let ended = eventually(Duration::from_secs(60), "ENDLIST after the grace period", &stack, || {
        let playlist = poll(&stack);
        (playlist["endlist"] == true).then_some(Instant::now())
    });
    // The grace period runs from when ingest saw the connection close, which can precede the moment this test
    // saw ffmpeg exit by up to a second or so (ffmpeg lingers on close, and the test polls every 500 ms).
    let after = ended.duration_since(gone);
    eprintln!("ENDLIST {after:?} after the publisher left");
    assert!(after >= Duration::from_secs(6), "ENDLIST came {after:?} after the end, with a grace period of 8 s");

    // DVR: both sessions whole, with the one discontinuity between them, and it decodes cleanly.
    let master = get_parsed(&stack, "/dvr/cam/master.m3u8");
    assert_eq!(master["variants"].as_array().map(Vec::len), Some(1), "{master}");
    let dvr = get_parsed(&stack, "/dvr/cam/360p.m3u8");
    check_media(&dvr, "/dvr/cam/360p.m3u8");
    assert_eq!(dvr["media_sequence"], 0);
    assert_eq!(dvr["endlist"], true);
    let all = segments(&dvr);
    assert!(all.len() >= 13, "12 s and 18 s in 2 s chunks: {} segments", all.len());
    assert_eq!(all.iter().filter(|s| s["discontinuity"] == true).count(), 1, "{dvr}");
    // The DVR playlist numbers segments as the live one did.
    let mut compared = 0;
    for (msn, segment) in all.iter().enumerate() {
        if let Some(live) = seen.get(&uri(segment)) {
            assert_eq!(*live, msn as u64, "{}", uri(segment));
            compared += 1;
        }
    }
    assert!(compared >= 10, "most segments were seen live: {compared}");
    // Each session of the DVR playlist decodes without an error. (ffmpeg's HLS reader ignores
    // EXT-X-DISCONTINUITY, so across the join its muxer sees the new publisher's timestamps go back; players
    // reset at the tag, which tests/browser.rs checks in chromium.)
    let text = stack.get("/dvr/cam/360p.m3u8").1;
    let mut parts = vec![String::new()];
    for line in text.lines().skip_while(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME")) {
        match line {
            "#EXT-X-DISCONTINUITY" => parts.push(String::new()),
            "#EXT-X-ENDLIST" => {}
            uri if !uri.starts_with('#') => parts.last_mut().expect("part").push_str(&format!("{}\n", stack.url(uri))),
            tag => parts.last_mut().expect("part").push_str(&format!("{tag}\n")),
        }
    }
    assert_eq!(parts.len(), 2, "two sessions: {text}");
    for (i, part) in parts.iter().enumerate() {
        let path = stack.data().join(format!("session-{i}.m3u8"));
        let playlist = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n{part}#EXT-X-ENDLIST\n");
        std::fs::write(&path, playlist).expect("write playlist");
        let path = path.to_str().expect("utf-8 path");
        let args = ["-v", "error", "-protocol_whitelist", "file,http,tcp", "-i", path, "-map", "0", "-f", "null", "-"];
        let (ok, _, stderr) = run("ffmpeg", &args);
        assert!(ok && stderr.trim().is_empty(), "session {i} of the DVR playlist decodes: {stderr}");
    }

    // A clip of wall-clock time: from the second segment's date for 3 s, as RFC 3339 and as Unix ms.
    let from = all[1]["program_date_time"].as_str().expect("date").to_string();
    let from_ms = (date_seconds(&from) * 1000.0).round() as i64;
    let rfc3339 = from.replace("+00:00", "Z");
    for query in [format!("from={}&to={}", from_ms, from_ms + 3000), format!("from={rfc3339}&to={}", from_ms + 3000)] {
        let master = get_parsed(&stack, &format!("/clip/cam/master.m3u8?{query}"));
        let variant = master["variants"][0]["uri"].as_str().expect("variant").to_string();
        assert!(variant.starts_with("360p.m3u8?from="), "{variant}");
        let clip = get_parsed(&stack, &format!("/clip/cam/{variant}"));
        check_media(&clip, "clip");
        assert_eq!(clip["playlist_type"], "vod");
        assert_eq!(clip["endlist"], true);
        let uris: Vec<String> = segments(&clip).iter().map(uri).collect();
        assert_eq!(uris, vec![uri(&all[1]), uri(&all[2])], "the segments the range touches");
    }
    assert_eq!(stack.get("/clip/cam/360p.m3u8?from=5&to=1").0, 400);
    assert_eq!(stack.get("/clip/cam/360p.m3u8").0, 400);
    assert_eq!(stack.get("/clip/cam/360p.m3u8?from=0&to=1000").0, 404, "nothing recorded then");
}

/// Response headers of a request, lowercased names.
fn request(
    stack: &Stack,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, String) {
    stack.request(method, path, headers)
}

#[test]
fn caching_headers_etags_and_cors() {
    let stack = Stack::start();
    let publisher = publish(&stack.srt_url("cam"), "640x360", 25, 10, 440);
    eventually(Duration::from_secs(60), "cam live", &stack, || {
        (stack.get("/live/cam/360p.m3u8").0 == 200).then_some(())
    });

    let playlist_type = "application/vnd.apple.mpegurl";
    let (status, master, body) = request(&stack, "GET", "/live/cam/master.m3u8", &[]);
    assert_eq!(status, 200);
    assert_eq!(master["content-type"], playlist_type);
    assert_eq!(master["cache-control"], "public, max-age=5");
    assert_eq!(master["access-control-allow-origin"], "*");
    let parsed = parse_playlist(&stack, &body);
    let variant = &parsed["variants"][0];
    assert_eq!(variant["resolution"], serde_json::json!([640, 360]));
    assert_eq!(variant["frame_rate"], 25.0);
    assert!(variant["bandwidth"].as_u64() >= variant["average_bandwidth"].as_u64(), "{variant}");
    assert!(variant["codecs"].as_str().is_some_and(|c| c.starts_with("avc1.") && c.ends_with(",mp4a.40.2")));

    // A live media playlist: half a target duration (2 s) of caching, an ETag, and 304 for a matching one.
    let (_, media, body) = request(&stack, "GET", "/live/cam/360p.m3u8", &[]);
    assert_eq!(media["cache-control"], "public, max-age=1");
    assert_eq!(media["content-type"], playlist_type);
    let etag = media["etag"].clone();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let (status, again, _) = request(&stack, "GET", "/live/cam/360p.m3u8", &[("If-None-Match", &etag)]);
    if status == 200 {
        // A new chunk arrived in between: the playlist changed, and so did its ETag.
        assert_ne!(again["etag"], etag);
    } else {
        assert_eq!(status, 304);
        assert_eq!(again["etag"], etag);
    }
    // The same playlist, asked twice in a row, is not sent again.
    let (_, now, _) = request(&stack, "GET", "/live/cam/360p.m3u8", &[]);
    let (status, not_modified, empty) =
        request(&stack, "GET", "/live/cam/360p.m3u8", &[("If-None-Match", &now["etag"])]);
    assert!(status == 304 || not_modified["etag"] != now["etag"], "{status}");
    if status == 304 {
        assert!(empty.is_empty());
    }
    let (status, _, _) = request(&stack, "GET", "/live/cam/360p.m3u8", &[("If-None-Match", "\"other\"")]);
    assert_eq!(status, 200);

    // Segments: a year, immutable, the right type.
    let first = segments(&parse_playlist(&stack, &body)).first().map(uri).expect("a segment");
    let (status, segment, _) = request(&stack, "GET", &first, &[]);
    assert_eq!(status, 200);
    assert_eq!(segment["content-type"], "video/mp2t");
    assert_eq!(segment["cache-control"], "max-age=31536000, immutable");
    assert_eq!(segment["access-control-allow-origin"], "*");
    // The publisher's source chunk beside it is stored, but not served (no --serve-source).
    let source = first.replace("/360p/", "/source/");
    assert!(source.contains("/source/") && source.starts_with("/media/"), "{first}");
    let stored = stack.data().join("media").join(source.trim_start_matches("/media/"));
    assert!(stored.exists(), "{} is stored", stored.display());
    let (status, _, body) = request(&stack, "GET", &source, &[]);
    assert_eq!((status, body.as_str()), (404, "object not found\n"), "{source}");

    // CORS preflight, for players on other origins.
    let (status, preflight, _) = request(
        &stack,
        "OPTIONS",
        "/live/cam/master.m3u8",
        &[("Origin", "https://player.example"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(status, 204);
    assert_eq!(preflight["access-control-allow-origin"], "*");
    assert!(preflight["access-control-allow-methods"].contains("GET"));

    // Unknown streams and renditions: 404 with a short body, cached only briefly.
    for path in ["/live/nope/master.m3u8", "/live/cam/1080p.m3u8", "/live/nope/360p.m3u8", "/media/live/x.ts"] {
        let (status, headers, body) = request(&stack, "GET", path, &[]);
        assert_eq!(status, 404, "{path}");
        assert!(body.len() < 40 && body.ends_with("not found\n"), "{path}: {body:?}");
        assert_eq!(headers.get("cache-control").map(String::as_str), Some("max-age=1"), "{path}");
    }

    // Ended (grace period of 1 s in the test stack): long caching.
    publisher.finish();
    eventually(Duration::from_secs(60), "cam to end", &stack, || {
        stack.get("/live/cam/360p.m3u8").1.contains("#EXT-X-ENDLIST").then_some(())
    });
    let (_, ended, body) = request(&stack, "GET", "/live/cam/360p.m3u8", &[]);
    assert_eq!(ended["cache-control"], "public, max-age=300");
    check_media(&parse_playlist(&stack, &body), "ended");
    let (_, ended_master, _) = request(&stack, "GET", "/live/cam/master.m3u8", &[]);
    assert_eq!(ended_master["cache-control"], "public, max-age=300");
}

/// The newest part a live playlist lists, as (media sequence, part index), and its URI; read from the text (the
/// strict parser is too slow for a loop that must ask again at once).
fn newest_part(body: &str) -> ((u64, u64), String) {
    let number = |prefix: &str| {
        body.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.split(',').next()?.parse::<u64>().ok())
    };
    let mut msn = number("#EXT-X-MEDIA-SEQUENCE:").expect("media sequence")
        + number("#EXT-X-SKIP:SKIPPED-SEGMENTS=").unwrap_or(0);
    let (mut parts, mut newest) = (0, None);
    for line in body.lines() {
        if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
            let uri = attributes.split("URI=\"").nth(1).and_then(|u| u.split('"').next()).expect("part URI");
            newest = Some(((msn, parts), uri.to_string()));
            parts += 1;
        } else if !line.is_empty() && !line.starts_with('#') {
            (msn, parts) = (msn + 1, 0);
        }
    }
    newest.expect("a part")
}

/// The last listed part of a parsed live playlist: (media sequence number, part index).
fn live_edge(playlist: &Value) -> (u64, u64) {
    let sequence = playlist["media_sequence"].as_u64().expect("media sequence");
    let complete = segments(playlist).len() as u64;
    let skipped = playlist["skipped_segments"].as_u64().unwrap_or(0);
    match playlist["pending"].as_array().and_then(|p| p.first()) {
        Some(pending) => (sequence + skipped + complete, pending["parts"].as_array().expect("parts").len() as u64 - 1),
        None => {
            let last = segments(playlist).last().expect("a segment");
            (sequence + skipped + complete - 1, last["parts"].as_array().expect("parts").len().max(1) as u64 - 1)
        }
    }
}

/// LL-HLS on the live playlists (RFC 8216bis), read through the strict parser: parts of whole frames within the
/// part target on the last segments and the one in progress, the preload hint, rendition reports, server
/// control; blocking reloads answered when the part exists (and 400 for requests too far ahead), delta updates,
/// parts served as the segment's bytes, a hinted part answered once it exists, identical concurrent blocking
/// requests answered alike; and a plain playlist once the stream is over.
#[test]
fn low_latency_playlists_blocking_reloads_delta_updates_and_parts() {
    let stack = Stack::start_with(StackOptions { window: Some(10), ..StackOptions::default() });
    // 720p in, so the ladder has three renditions to report on.
    let announced = stack.watch_parts("ll");
    let publisher = publish(&stack.srt_url("ll"), "1280x720", 25, 50, 440);
    let parsed = |path: &str| get_parsed(&stack, path);
    // Live with parts, and long enough for a delta update to leave something out (more than 6 target durations).
    let playlist = eventually(Duration::from_secs(90), "an LL-HLS playlist with a window to skip", &stack, || {
        let (status, body) = stack.get("/live/ll/360p.m3u8");
        if status != 200 {
            return None;
        }
        let playlist = parse_playlist(&stack, &body);
        let listed: f64 = segments(&playlist).iter().map(|s| s["duration"].as_f64().unwrap_or(0.0)).sum();
        (playlist["part_target"].is_number() && listed > 14.0).then_some(playlist)
    });
    check_media(&playlist, "/live/ll/360p.m3u8");
    let target = playlist["target_duration"].as_f64().expect("target");
    let part_target = playlist["part_target"].as_f64().expect("part target");
    assert_eq!(part_target, 0.5);
    let control = &playlist["server_control"];
    assert_eq!(control["can_block_reload"], true, "{playlist}");
    assert!(control["part_hold_back"].as_f64().expect("part hold back") >= 3.0 * part_target, "{control}");
    assert!(control["can_skip_until"].as_f64().expect("skip until") >= 6.0 * target, "{control}");
    assert_eq!(playlist["version"], 6);

    // Parts only on the last three segments (and the one in progress), each within the target, whole 40 ms
    // frames, the first of a segment independent, adding up to the segment.
    let with_parts: Vec<&Value> =
        segments(&playlist).iter().filter(|s| !s["parts"].as_array().expect("parts").is_empty()).collect();
    assert!(!with_parts.is_empty() && with_parts.len() <= 3, "{playlist}");
    let all = segments(&playlist);
    assert!(all[all.len() - with_parts.len()..].iter().all(|s| !s["parts"].as_array().expect("parts").is_empty()));
    let pending = playlist["pending"].as_array().expect("pending");
    for segment in with_parts.iter().copied().chain(pending.iter()) {
        let parts = segment["parts"].as_array().expect("parts");
        assert_eq!(parts[0]["independent"], true, "{segment}");
        assert!(parts.iter().skip(1).all(|p| p["independent"] == false), "{segment}");
        for part in parts {
            let duration = part["duration"].as_f64().expect("duration");
            assert!(duration <= part_target && duration > 0.0, "{part}");
            assert!(((duration * 25.0).round() - duration * 25.0).abs() < 1e-3, "whole frames: {part}");
        }
        if let Some(total) = segment["duration"].as_f64() {
            let sum: f64 = parts.iter().map(|p| p["duration"].as_f64().unwrap_or(0.0)).sum();
            assert!((sum - total).abs() < 0.001, "parts add up to the segment: {segment}");
            // The segment is its parts end to end, byte for byte, and each part is immutable.
            let mut joined = Vec::new();
            for part in parts {
                let (status, headers, _) = request(&stack, "GET", part["uri"].as_str().expect("uri"), &[]);
                assert_eq!((status, headers["cache-control"].as_str()), (200, "max-age=31536000, immutable"));
                joined.extend(support::get_url(&stack.url(part["uri"].as_str().expect("uri"))).1);
            }
            let (_, whole) = support::get_url(&stack.url(segment["uri"].as_str().expect("uri")));
            assert!(whole == joined, "{}: the segment is its parts", segment["uri"]);
        }
    }
    let hint = &playlist["preload_hint"];
    assert_eq!(hint["type"], "PART", "{playlist}");
    let reports: Vec<&str> =
        playlist["rendition_reports"].as_array().expect("reports").iter().filter_map(|r| r["uri"].as_str()).collect();
    assert_eq!(reports.len(), 2, "the other two renditions: {reports:?}");
    assert!(!reports.contains(&"360p.m3u8"));

    // A blocking reload for the next part: answered once it is there, cached for six target durations.
    let (msn, part) = live_edge(&playlist);
    let path = format!("/live/ll/360p.m3u8?_HLS_msn={msn}&_HLS_part={}", part + 1);
    let asked = Instant::now();
    let (status, headers, body) = request(&stack, "GET", &path, &[]);
    assert_eq!(status, 200, "{body}");
    assert!(asked.elapsed() < Duration::from_secs_f64(3.0 * target + 1.0), "answered within 3 target durations");
    assert_eq!(headers["cache-control"], format!("public, max-age={}", 6 * target as u64));
    let after = parse_playlist(&stack, &body);
    let (new_msn, new_part) = live_edge(&after);
    assert!((new_msn, new_part) > (msn, part), "the answer has the part asked for: {:?}", (new_msn, new_part));
    // The same request from many players at once: one answer for all.
    let next = format!("/live/ll/360p.m3u8?_HLS_msn={new_msn}&_HLS_part={}", new_part + 1);
    let answers: Vec<(u16, String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let (status, headers, body) = request(&stack, "GET", &next, &[]);
                    (status, headers.get("etag").cloned().unwrap_or_default(), body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request")).collect()
    });
    // Each is the one rendering of the change that listed the part, shared by all it woke; a request that came
    // in just after a further change (another rendition's part, in the rendition reports) gets that one.
    assert!(answers.iter().all(|a| a.0 == 200 && live_edge(&parse_playlist(&stack, &a.2)) > (new_msn, new_part)));
    let mut renderings: Vec<&str> = answers.iter().map(|a| a.1.as_str()).collect();
    renderings.sort_unstable();
    renderings.dedup();
    assert!(renderings.len() <= 2, "8 identical requests, {} renderings: {answers:?}", renderings.len());
    // Blocking reloads one after the other, as a player makes them: each answered as soon as its part is
    // announced (`part.ready`, seen by this test's own subscription), not at the next poll or render. Only the
    // requests made before their part existed count (the others were not held).
    let mut edge = (new_msn, new_part);
    let mut delays = Vec::new();
    for _ in 0..12 {
        let path = format!("/live/ll/360p.m3u8?_HLS_msn={}&_HLS_part={}", edge.0, edge.1 + 1);
        let asked = Instant::now();
        let (status, _, body) = request(&stack, "GET", &path, &[]);
        let answered = Instant::now();
        assert_eq!(status, 200, "{body}");
        let (newest, uri) = newest_part(&body);
        assert!(newest > edge, "{path} answered with the part: {body}");
        let ready = announced.announced(&uri).unwrap_or_else(|| panic!("{uri} was announced on part.ready"));
        // Counted as 0 when the answer came before this test heard of the part.
        if ready > asked {
            delays.push(answered.saturating_duration_since(ready).as_secs_f64() * 1000.0);
        }
        edge = newest;
    }
    delays.sort_by(f64::total_cmp);
    eprintln!("[hls] blocking reloads answered after part.ready, ms: {delays:.1?}");
    assert!(delays.len() >= 6, "most requests were held until their part: {delays:?}");
    let median = delays[delays.len() / 2];
    assert!(median < 100.0, "a blocking reload is answered within 100 ms of part.ready: {delays:?}");
    // Too far ahead, or a part without a segment: 400 at once.
    for bad in [format!("?_HLS_msn={}", edge.0 + 3), "?_HLS_part=1".to_string(), "?_HLS_msn=x".to_string()] {
        let started = Instant::now();
        let (status, _, _) = request(&stack, "GET", &format!("/live/ll/360p.m3u8{bad}"), &[]);
        assert_eq!(status, 400, "{bad}");
        assert!(started.elapsed() < Duration::from_secs(1), "{bad} was not held");
    }
    // The hinted part: the request gets it once it exists.
    let hinted = parsed("/live/ll/360p.m3u8")["preload_hint"]["uri"].as_str().expect("hint").to_string();
    let (status, bytes) = support::get_url(&stack.url(&hinted));
    assert_eq!(status, 200, "{hinted}");
    assert_eq!(bytes.first(), Some(&0x47), "a transport stream");

    // A delta update: the segments before the skip boundary are left out, what remains is the full playlist's
    // end.
    let (_, full) = stack.get("/live/ll/360p.m3u8");
    let (_, delta) = stack.get("/live/ll/360p.m3u8?_HLS_skip=YES");
    let (full, delta) = (parse_playlist(&stack, &full), parse_playlist(&stack, &delta));
    let skipped = delta["skipped_segments"].as_u64().expect("skipped");
    assert!(skipped > 0, "{delta}");
    assert_eq!(delta["version"], 9);
    let kept: Vec<String> = segments(&delta).iter().map(uri).collect();
    let tail: Vec<String> = segments(&full).iter().skip(skipped as usize).map(uri).collect();
    if full["media_sequence"] == delta["media_sequence"] {
        assert_eq!(kept, tail, "a delta update lists the end of the same playlist");
    }
    let kept_seconds: f64 = segments(&delta).iter().map(|s| s["duration"].as_f64().unwrap_or(0.0)).sum();
    assert!(kept_seconds >= 6.0 * target - 2.0, "nothing within the skip boundary is left out: {kept_seconds}");

    // Every other rendition is LL-HLS too.
    for rendition in ["480p", "720p"] {
        let playlist = parsed(&format!("/live/ll/{rendition}.m3u8"));
        assert_eq!(playlist["part_target"], 0.5, "{rendition}");
        check_media(&playlist, rendition);
    }

    // Over: a plain playlist again, with the end.
    publisher.finish();
    let ended = eventually(Duration::from_secs(90), "ll to end", &stack, || {
        let playlist = parsed("/live/ll/360p.m3u8");
        (playlist["endlist"] == true).then_some(playlist)
    });
    assert!(ended["part_target"].is_null() && ended["preload_hint"].is_null(), "{ended}");
    assert!(segments(&ended).iter().all(|s| s["parts"].as_array().is_some_and(|p| p.is_empty())));
    let (status, _, _) = request(&stack, "GET", "/live/ll/360p.m3u8?_HLS_msn=100000&_HLS_part=0", &[]);
    assert_eq!(status, 200, "an ended playlist answers at once");
}
