//! Signed playback through the real stack: a manifest with two playback keys (a rotation in progress) and
//! `vip*` streams signed. Tokens are minted with `ladder token`. Checked over HTTP: a valid token opens the
//! master, the media playlists and (through the playlists' relative URIs) the segments and parts; the same
//! URLs without it, with it expired, forged, for another stream, of an unknown key or outside its prefix get
//! 403 with the reason; a stream that is not signed plays without one. Then hls.js in chromium plays the signed
//! stream from `/t/<token>/watch/vip` and fails with 403 on the same master URL without the token.

mod support;

use std::time::Duration;

use support::{eventually, parse_playlist, publish_small, run, Stack, StackOptions, LADDER, SMALL_LADDER};

const NEW: &str = "new:9f1c3a7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d";
const OLD: &str = "old:2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e0b2d4f6a8c1e3b5d7f";
const RETIRED: &str = "gone:4c6e8a0b2d4f6a8c0e2b4d6f8a1c3e5b7d9f1a3c5e7b9d1f";

fn token(keys: &str, stream: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", stream, "--playback-keys", keys];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = run(LADDER, &args);
    assert!(ok, "ladder token {args:?}: {stderr}");
    let token = stdout.trim().to_string();
    assert!(!token.is_empty() && !token.contains('/'), "{token}");
    token
}

/// The status and body of a GET, and asserts a 403 names its reason.
fn refused(stack: &Stack, path: &str, reason: &str) {
    let (status, headers, body) = stack.request("GET", path, &[]);
    assert_eq!(status, 403, "{path}: {body}");
    assert!(body.contains(reason), "{path}: {body:?} does not say {reason:?}");
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    assert_eq!(headers.get("cache-control").map(String::as_str), Some("no-store"), "{path}");
}

/// The URIs of a playlist's segments, parts and preload hint, as written.
fn media_uris(text: &str) -> Vec<String> {
    let mut uris: Vec<String> =
        text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(String::from).collect();
    for line in text.lines().filter(|l| l.starts_with("#EXT-X-PART:") || l.starts_with("#EXT-X-PRELOAD-HINT:")) {
        if let Some(uri) = line.split("URI=\"").nth(1).and_then(|rest| rest.split('"').next()) {
            uris.push(uri.to_string());
        }
    }
    uris
}

#[test]
fn signed_streams_play_with_a_token_and_only_with_it() {
    let keys = format!("{NEW},{OLD}");
    let stack = Stack::start_with(StackOptions {
        ladder: Some(SMALL_LADDER.to_string()),
        end_grace: Some(30),
        manifest_env: vec![("LADDER_PLAYBACK_KEYS", keys.clone()), ("LADDER_SIGNED_STREAMS", "vip*".into())],
        ..StackOptions::default()
    });
    let vip = publish_small(&stack.srt_url("vip"), 90, 440);
    let open = publish_small(&stack.srt_url("open"), 30, 880);

    let valid = token(&keys, "vip", &["--ttl", "10m"]);
    let base = format!("/t/{valid}/live/vip");
    let master = eventually(Duration::from_secs(60), "vip to be live under its token", &stack, || {
        let (status, master) = stack.get(&format!("{base}/master.m3u8"));
        (status == 200 && master.matches("#EXT-X-STREAM-INF").count() == 2).then_some(master)
    });
    // Variants are relative: they resolve under the token.
    let variants: Vec<&str> = master.lines().filter(|l| l.ends_with(".m3u8")).collect();
    assert_eq!(variants, ["120p.m3u8", "180p.m3u8"], "{master}");
    let (status, media) = eventually(Duration::from_secs(30), "180p with parts", &stack, || {
        let (status, media) = stack.get(&format!("{base}/180p.m3u8"));
        (status == 200 && media.contains("#EXT-X-PART:") && media.contains("#EXTINF")).then_some((status, media))
    });
    assert_eq!(status, 200);
    parse_playlist(&stack, &media);
    let uris = media_uris(&media);
    assert!(uris.len() >= 3, "{media}");
    assert!(!media.contains(&valid), "the playlist body holds no token: {media}");
    let hint = media
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .map(|u| u.trim_end_matches('"'));
    for uri in &uris {
        // From /t/<token>/live/vip/180p.m3u8, ../../media/... is /t/<token>/media/...: the body never holds the
        // token, so it is the same for every viewer and a CDN caches one copy.
        let key = uri.strip_prefix("../../media/").unwrap_or_else(|| panic!("{uri} is not relative: {media}"));
        if Some(uri.as_str()) == hint {
            continue; // the next part: answered once it exists
        }
        let (status, headers, _) = stack.request("GET", &format!("/t/{valid}/media/{key}"), &[]);
        assert_eq!(status, 200, "{key} under the token");
        assert_eq!(headers["content-type"], "video/mp2t");
        // Not kept past the token's expiry (10 minutes), and no longer immutable.
        let cache = &headers["cache-control"];
        let age: u64 = cache
            .split("max-age=")
            .nth(1)
            .and_then(|a| a.split(',').next())
            .expect("as the test expects")
            .parse()
            .expect("as the test expects");
        assert!(age <= 600 && !cache.contains("immutable"), "{key}: {cache}");
        refused(&stack, &format!("/media/{key}"), "needs a playback token");
    }
    let segment = uris.iter().find(|u| u.contains("/live/vip/")).expect("a whole segment");
    assert!(segment.ends_with(".ts"), "{segment}");

    // A 304 under the token: its ETag is its own (marked -t) and If-None-Match works.
    let (_, headers, _) = stack.request("GET", &format!("{base}/master.m3u8"), &[]);
    let etag = headers["etag"].clone();
    assert!(etag.ends_with("-t\""), "{etag}");
    let (status, _, _) = stack.request("GET", &format!("{base}/master.m3u8"), &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);

    // Without a token, or with a bad one.
    refused(&stack, "/live/vip/master.m3u8", "needs a playback token");
    refused(&stack, "/live/vip/180p.m3u8", "needs a playback token");
    refused(&stack, "/dvr/vip/180p.m3u8", "needs a playback token");
    let forged = {
        let (head, signature) = valid.rsplit_once('.').expect("as the test expects");
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        format!("{head}.{flipped}{}", &signature[1..])
    };
    refused(&stack, &format!("/t/{forged}/live/vip/master.m3u8"), "signature does not match");
    let later = valid.replacen(&valid.split('.').nth(1).expect("as the test expects").to_string(), "4102444800", 1);
    refused(&stack, &format!("/t/{later}/live/vip/master.m3u8"), "signature does not match");
    let other_stream = token(&keys, "vip-other", &[]);
    refused(&stack, &format!("/t/{other_stream}/live/vip/master.m3u8"), "signature does not match");
    refused(
        &stack,
        &format!("/t/{other_stream}/media/{}", segment.trim_start_matches("../../media/")),
        "does not match",
    );
    refused(&stack, "/t/not-a-token/live/vip/master.m3u8", "malformed");
    let short = token(&keys, "vip", &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    refused(&stack, &format!("/t/{short}/live/vip/master.m3u8"), "expired at 20");

    // Rotation: the second key still verifies, a key the manifest no longer has does not.
    let old = token(&keys, "vip", &["--key-id", "old"]);
    assert!(old.starts_with("old."), "{old}");
    assert_eq!(stack.get(&format!("/t/{old}/live/vip/master.m3u8")).0, 200);
    assert!(valid.starts_with("new."), "the first key signs: {valid}");
    let retired = token(RETIRED, "vip", &[]);
    refused(&stack, &format!("/t/{retired}/live/vip/master.m3u8"), "unknown key \"gone\"");

    // A prefix: live playlists only.
    let live_only = token(&keys, "vip", &["--prefix", "live/vip/"]);
    assert_eq!(stack.get(&format!("/t/{live_only}/live/vip/180p.m3u8")).0, 200);
    refused(&stack, &format!("/t/{live_only}/dvr/vip/180p.m3u8"), "only opens paths under \"live/vip/\"");

    // A stream that is not signed plays without a token (and with one of its own).
    eventually(Duration::from_secs(60), "open to be live", &stack, || {
        (stack.get("/live/open/master.m3u8").0 == 200).then_some(())
    });
    let open_token = token(&keys, "open", &[]);
    assert_eq!(stack.get(&format!("/t/{open_token}/live/open/master.m3u8")).0, 200);
    open.finish();

    // hls.js in chromium, from the signed player page.
    let player = support::browser_script("signed.mjs", &[&stack.url(""), &valid, "vip"]);
    let report = support::browser_report(player, &stack);
    assert!(report["played"].as_f64().expect("as the test expects") >= 4.0, "{report}");
    assert!(report["requests"].as_u64().expect("as the test expects") >= 5, "{report}");
    assert_eq!(report["withoutToken"]["code"], 403, "{report}");
    vip.finish();
}
