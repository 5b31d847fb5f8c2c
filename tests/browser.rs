//! The player page in a real browser: Debian's chromium, driven by playwright-core (tests/browser/watch.mjs),
//! watches a live stream over the real stack with hls.js in low-latency mode (LL-HLS, TS parts). It checks
//! that playback advances for 10 s loading parts, that the page reports the latency from each frame's
//! EXT-X-PROGRAM-DATE-TIME (its arrival at ingest) to the screen, that a forced switch to each rendition plays
//! it, and that playback goes on when the publisher drops and reconnects.

mod support;

use std::time::Duration;

use support::{eventually, publish, republish, Stack, StackOptions};

#[test]
fn the_player_page_plays_switches_renditions_and_survives_a_reconnect() {
    let stack = Stack::start_with(StackOptions { end_grace: Some(30), ..StackOptions::default() });
    let url = stack.srt_url("cam");
    // 720p in, so the ladder has three renditions to switch between.
    let first = publish(&url, "1280x720", 25, 45, 440);
    eventually(Duration::from_secs(60), "cam to be live", &stack, || {
        let (status, master) = stack.get("/live/cam/master.m3u8");
        (status == 200 && master.matches("#EXT-X-STREAM-INF").count() == 3).then_some(())
    });

    let player = support::browser_script("watch.mjs", &[&stack.url("/"), "cam"]);

    // The publisher drops at the end of its input and comes back under the same name.
    first.finish();
    let second = republish(&url, "1280x720", 25, 30, 880);
    let report = support::browser_report(player, &stack);
    second.finish();
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, vec!["advance", "360p", "480p", "720p", "reconnect"], "{report}");
    let mut latencies: Vec<f64> =
        report["latencies"].as_array().expect("latencies").iter().filter_map(|l| l.as_f64()).collect();
    latencies.sort_by(f64::total_cmp);
    assert!(latencies.len() >= 5, "{report}");
    eprintln!(
        "glass to glass in chromium with hls.js lowLatencyMode: median {:.2} s, max {:.2} s, over {} parts loaded",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        report["parts"]
    );
}
