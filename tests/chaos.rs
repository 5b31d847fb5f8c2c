//! Crash safety (issue 10) with real processes: services killed with SIGKILL, stopped with SIGTERM and
//! restarted, NATS nodes killed, a nats-server restarted, two segmenters sharing the streams, all while an SRT
//! publisher streams. Afterwards every chunk must be listed exactly once in every variant's DVR playlist, with
//! continuous timestamps across every join (ffprobe), no discontinuity where the publisher did not reconnect,
//! objects never rewritten, and every variant decoding cleanly (`support::checks`).
//!
//! The tests run one at a time (each starts up to a dozen processes on a machine that may have two cores), with
//! small publishers (320x180, 400 kb/s) and a two-rendition ladder, so that the schedule of kills, not the CPU,
//! decides what happens. No assertion is about timing: every wait is bounded, every check is on the result.

mod support;

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use support::{
    checks::{check_one_owner_at_a_time, check_stream, MediaWatch, Sent},
    eventually, publish_small, republish_small, Stack, StackOptions, SMALL_LADDER,
};

/// The renditions of [`SMALL_LADDER`], so that "every variant" means more than one.
const VARIANTS: [&str; 2] = ["180p", "120p"];

/// One test at a time: each one is a whole deployment.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Two of segmenter, transcoder, manifest and ingest, and one indexer (one indexer at a time on SQLite).
fn redundant(nats_nodes: usize) -> StackOptions {
    StackOptions {
        nats_nodes,
        instances: vec![("indexer", 1), ("segmenter", 2), ("transcoder", 2), ("manifest", 2), ("ingest", 2)],
        ladder: Some(SMALL_LADDER.into()),
        ..StackOptions::default()
    }
}

fn wait_live(stack: &Stack, stream: &str) {
    eventually(Duration::from_secs(60), &format!("{stream} to be live"), stack, || {
        (stack.get(&format!("/live/{stream}/{}.m3u8", VARIANTS[0])).0 == 200).then_some(())
    });
}

/// Sleeps until `at` after `start` (or not at all if that is past).
fn sleep_until(start: Instant, at: Duration) {
    if let Some(left) = (start + at).checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// The segmenter that holds `stream`'s lease, if the lease says (waits up to 10 s); else `segmenter-1`.
fn owning_segmenter(stack: &Stack, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(owner) = stack.segmenter_owner(stream) {
            eprintln!("{stream} is cut by {owner} (lease: {:?})", stack.segmenter_lease(stream));
            return owner;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "cannot tell which segmenter cuts {stream} (lease: {:?}): killing segmenter-1",
        stack.segmenter_lease(stream)
    );
    "segmenter-1".into()
}

#[test]
fn chaos_kills_an_instance_of_every_service_and_a_nats_node_while_streaming() {
    let _serial = serial();
    let mut stack = Stack::start_with(redundant(3));
    let watch = MediaWatch::start(stack.data().join("media"));
    let publisher = publish_small(&stack.srt_url("chaos"), 60, 440);
    wait_live(&stack, "chaos");
    let live = Instant::now();

    // One after another, a few seconds apart; the publisher's ingest last.
    sleep_until(live, Duration::from_secs(3));
    let owner = owning_segmenter(&stack, "chaos");
    stack.kill(&owner);
    stack.restart(&owner);
    sleep_until(live, Duration::from_secs(9));
    stack.kill("transcoder-1");
    sleep_until(live, Duration::from_secs(14));
    stack.kill("indexer-1");
    sleep_until(live, Duration::from_secs(16));
    stack.restart("indexer-1");
    sleep_until(live, Duration::from_secs(20));
    stack.kill("manifest-1");
    sleep_until(live, Duration::from_secs(25));
    stack.kill_nats_node(0);
    sleep_until(live, Duration::from_secs(33));
    stack.restart_nats_node(0);

    // Until here the publisher was never dropped. Now its ingest dies: it reconnects to the other one, as an
    // encoder with a backup URL does, once the dead ingest's claim on the name has expired (about 3 s).
    sleep_until(live, Duration::from_secs(40));
    stack.kill("ingest-1");
    publisher.stop(Duration::from_secs(5));
    let again = republish_small(&stack.srt_url_of("ingest-2", "chaos"), 12, 660);
    again.finish();
    check_stream(&stack, "chaos", &[Sent::CutShort, Sent::Whole(12.0)], &VARIANTS);
    eprintln!("chaos: {:?}", check_one_owner_at_a_time(&stack, "chaos"));
    watch.assert_write_once(3 * 25);
}

#[test]
fn rolling_restart_with_sigterm_of_every_service_while_streaming() {
    let _serial = serial();
    let mut stack = Stack::start_with(redundant(1));
    let watch = MediaWatch::start(stack.data().join("media"));
    let first = publish_small(&stack.srt_url("rolling"), 60, 440);
    wait_live(&stack, "rolling");

    // Every instance in turn: SIGTERM, a clean exit, and the same command line again.
    let order = ["segmenter-1", "segmenter-2", "transcoder-1", "transcoder-2", "indexer-1", "manifest-1", "manifest-2"];
    for name in order {
        std::thread::sleep(Duration::from_secs(3));
        let status = stack.terminate(name);
        assert!(status.success(), "{name} exits cleanly on SIGTERM: {status}\n{}", stack.log(name));
        stack.restart(name);
    }
    // Ingest last: its publisher is disconnected by the restart and reconnects, as an encoder would, which
    // starts a second session (the one discontinuity the playlists may have).
    std::thread::sleep(Duration::from_secs(3));
    let status = stack.terminate("ingest-1");
    assert!(status.success(), "ingest-1 exits cleanly on SIGTERM: {status}\n{}", stack.log("ingest-1"));
    first.stop(Duration::from_secs(10));
    stack.restart("ingest-1");
    let second = republish_small(&stack.srt_url("rolling"), 12, 880);
    second.finish();

    check_stream(&stack, "rolling", &[Sent::CutShort, Sent::Whole(12.0)], &VARIANTS);
    eprintln!("rolling: {:?}", check_one_owner_at_a_time(&stack, "rolling"));
    watch.assert_write_once(3 * 20);
}

#[test]
fn a_nats_server_restarted_mid_stream_loses_no_chunk() {
    let _serial = serial();
    let mut stack = Stack::start_with(StackOptions {
        instances: vec![("indexer", 1), ("segmenter", 1), ("transcoder", 1), ("manifest", 1), ("ingest", 1)],
        ladder: Some(SMALL_LADDER.into()),
        ..StackOptions::default()
    });
    let watch = MediaWatch::start(stack.data().join("media"));
    let publisher = publish_small(&stack.srt_url("natsrestart"), 30, 440);
    wait_live(&stack, "natsrestart");
    std::thread::sleep(Duration::from_secs(8));
    // SIGKILL and start again on the same port and file store.
    stack.restart_nats();

    publisher.finish();
    check_stream(&stack, "natsrestart", &[Sent::Whole(30.0)], &VARIANTS);
    watch.assert_write_once(3 * 12);
}

#[test]
fn two_segmenters_share_two_streams_each_cut_by_one_of_them() {
    let _serial = serial();
    let stack = Stack::start_with(StackOptions {
        instances: vec![("indexer", 1), ("segmenter", 2), ("transcoder", 1), ("manifest", 1), ("ingest", 1)],
        ladder: Some(SMALL_LADDER.into()),
        ..StackOptions::default()
    });
    let watch = MediaWatch::start(stack.data().join("media"));
    let streams = ["left", "right"];
    let mut publishers: Vec<_> =
        streams.iter().zip([440, 880]).map(|(s, tone)| publish_small(&stack.srt_url(s), 30, tone)).collect();

    // Who holds each stream's lease, sampled while they stream.
    let mut owners: Vec<BTreeSet<String>> = vec![BTreeSet::new(); streams.len()];
    while !publishers.iter_mut().all(|p| p.is_finished()) {
        for (stream, seen) in streams.iter().zip(&mut owners) {
            if let Some(lease) = stack.segmenter_lease(stream) {
                seen.insert(stack.segmenter_owner(stream).unwrap_or(lease));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for publisher in publishers {
        publisher.finish();
    }

    for stream in streams {
        check_stream(&stack, stream, &[Sent::Whole(30.0)], &VARIANTS);
    }
    for (stream, seen) in streams.iter().zip(&owners) {
        assert_eq!(seen.len(), 1, "{stream} is cut by one segmenter all along; its lease named {seen:?}");
        // The segmenters' own account: never two owners at once, and one of them cut the session.
        let ownership = check_one_owner_at_a_time(&stack, stream);
        eprintln!("{stream}: {ownership:?}");
        let cut = logged(&stack, stream, "segmenting new session");
        assert_eq!(cut.len(), 1, "one segmenter log says it cut {stream}: {cut:?}\n{}", stack.logs());
    }
    eprintln!(
        "owners: {}",
        streams.iter().zip(&owners).map(|(s, o)| format!("{s}: {o:?}")).collect::<Vec<_>>().join(", ")
    );
    watch.assert_write_once(2 * 3 * 12);
}

/// The segmenter instances whose log has a line with `message` about `stream` (`stream=<stream>`).
fn logged(stack: &Stack, stream: &str, message: &str) -> Vec<String> {
    let field = format!("stream={stream}");
    stack
        .instances()
        .into_iter()
        .filter(|name| name.starts_with("segmenter"))
        .filter(|name| stack.log(name).lines().any(|l| l.contains(message) && l.split_whitespace().any(|w| w == field)))
        .collect()
}

/// The write-once watch itself: a file rewritten with other bytes is reported, one that only grew while being
/// written is not, and neither is a staging file.
#[test]
fn the_write_once_watch_reports_a_rewritten_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("media");
    std::fs::create_dir_all(root.join("live/s")).expect("dirs");
    let watch = MediaWatch::start(root.clone());
    let pause = || std::thread::sleep(Duration::from_millis(500));
    std::fs::write(root.join("live/s/grown.ts"), b"first half").expect("write");
    std::fs::write(root.join("live/s/kept.ts"), b"the same bytes").expect("write");
    std::fs::write(root.join("live/s/rewritten.ts"), b"original").expect("write");
    std::fs::write(root.join("live/s/x.ts#1"), b"staging").expect("write");
    pause();
    std::fs::write(root.join("live/s/grown.ts"), b"first half, second half").expect("write");
    std::fs::write(root.join("live/s/kept.ts"), b"the same bytes").expect("write");
    std::fs::write(root.join("live/s/rewritten.ts"), b"replaced").expect("write");
    std::fs::write(root.join("live/s/x.ts#1"), b"other staging").expect("write");
    pause();
    let report = watch.finish();
    assert_eq!(report.files, 3, "{report:?}");
    assert_eq!(report.violations.len(), 1, "{report:?}");
    assert!(report.violations[0].contains("rewritten.ts"), "{report:?}");
}
