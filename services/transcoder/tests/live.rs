//! Chunks transcoded while they arrive, against a real nats-server, the real segmenter and ffmpeg: parts are
//! announced before their chunk is complete, every part is whole frames within the part target, the segment
//! is exactly its parts end to end, and a worker killed in the middle of a chunk is replaced by one that redoes
//! it from its start and writes the same parts under the same keys.

mod support;

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use ladder_bus::topology;
use ladder_media::ts;
use ladder_proto::{PartReady, RenditionReady};
use ladder_transcoder::{Config, RenditionSpec};
use prost::Message as _;
use support::{all, setup, Setup};
use tokio_util::sync::CancellationToken;

const TARGET_TICKS: u64 = 45_000;

/// 6 s of 640x360 at 25 fps with B-frames and AAC, a keyframe every 2 s: three chunks.
fn source(setup: &Setup) -> Vec<u8> {
    setup.make_source(
        "source.ts",
        "-f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 6 \
         -c:v libx264 -preset veryfast -bf 2 -g 50 -keyint_min 50 -sc_threshold 0 -c:a aac",
    )
}

fn ladder() -> Vec<RenditionSpec> {
    vec![RenditionSpec::new("360p", 360, 800_000), RenditionSpec::new("180p", 180, 300_000)]
}

/// A transcoder in a runtime of its own, so it can be dropped the way a killed process disappears (its ffmpeg
/// is killed with it).
struct Transcoder {
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
}

impl Transcoder {
    fn start(config: Config) -> Transcoder {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let stop = CancellationToken::new();
        let token = stop.clone();
        runtime.spawn(async move { ladder_transcoder::run(config, token).await.expect("transcoder runs") });
        Transcoder { runtime: Some(runtime), stop }
    }

    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            // Dropped inside the test's runtime, which must not block.
            runtime.shutdown_background();
        }
    }
}

async fn parts(setup: &Setup, stream: &str) -> Vec<PartReady> {
    all(&setup.bus, topology::PARTS_STREAM, &ladder_proto::parts::subject(stream))
        .await
        .iter()
        .map(|m| PartReady::decode(m.payload.as_ref()).expect("part"))
        .collect()
}

async fn ready(setup: &Setup, stream: &str) -> Vec<RenditionReady> {
    all(&setup.bus, topology::EVENTS_STREAM, &format!("rendition.ready.{stream}"))
        .await
        .iter()
        .map(|m| RenditionReady::decode(m.payload.as_ref()).expect("rendition"))
        .collect()
}

/// Waits until `check` holds on the stream's parts.
async fn wait_parts(setup: &Setup, stream: &str, what: &str, check: impl Fn(&[PartReady]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if check(&parts(setup, stream).await) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every chunk of the session has every rendition ready.
async fn wait_ready(setup: &Setup, stream: &str, chunks: u64) -> Vec<RenditionReady> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ready = ready(setup, stream).await;
        if ready.len() as u64 >= chunks * ladder().len() as u64 {
            return ready;
        }
        let failed = support::last(&setup.bus, &format!("chunk.failed.{stream}")).await;
        assert!(failed.is_none(), "a chunk failed: {:?}", failed.map(ladder_proto::ChunkFailed::decode));
        assert!(std::time::Instant::now() < deadline, "{} of {chunks} chunks ready", ready.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output();
    String::from_utf8_lossy(&out.expect("ffmpeg").stderr).to_string()
}

/// Every rendition chunk is its parts end to end, and the parts are what LL-HLS wants of them.
async fn check_parts(setup: &Setup, stream: &str, ready: &[RenditionReady]) {
    let parts = parts(setup, stream).await;
    let mut by_chunk: BTreeMap<(u64, String), Vec<&PartReady>> = BTreeMap::new();
    for part in &parts {
        by_chunk.entry((part.sequence, part.rendition.clone())).or_default().push(part);
    }
    for segment in ready {
        let at = format!("{stream} chunk {} {}", segment.sequence, segment.rendition);
        let list = by_chunk.get(&(segment.sequence, segment.rendition.clone())).expect("parts of every chunk");
        let indices: Vec<u32> = list.iter().map(|p| p.part).collect();
        assert_eq!(indices, (0..list.len() as u32).collect::<Vec<_>>(), "{at}: each part announced once, in order");
        assert!(list[0].independent && list.iter().skip(1).all(|p| !p.independent), "{at}: only part 0 has the IDR");
        assert!(list.last().is_some_and(|p| p.last) && list.iter().rev().skip(1).all(|p| !p.last), "{at}");
        assert!(list.iter().all(|p| p.duration <= TARGET_TICKS && p.part_target == TARGET_TICKS), "{at}: {list:?}");
        // Whole frames of 40 ms: 12 fit in 0.5 s. Only the last part may be shorter.
        assert!(list.iter().rev().skip(1).all(|p| p.duration == 43_200), "{at}: {list:?}");
        assert_eq!(list.iter().map(|p| p.duration).sum::<u64>(), segment.duration, "{at}: parts add up");
        let mut joined = Vec::new();
        for part in list {
            let bytes = setup.config.storage.get(&part.object_key).await.expect("part stored");
            assert_eq!(bytes.len() as u64, part.size_bytes);
            // The tables lead (ffmpeg's own output starts with its SDT, PID 0x11, then the PAT).
            let leading: Vec<u16> = bytes.chunks(188).take(3).map(ts::pid).collect();
            assert!(leading[0] == 0 || leading[..2] == [0x11, 0], "{at}: part {} starts with {leading:?}", part.part);
            joined.extend_from_slice(&bytes);
        }
        let stored = setup.config.storage.get(&segment.object_key).await.expect("segment stored");
        assert!(stored.as_ref() == joined.as_slice(), "{at}: the segment is its parts end to end");
        let path = setup.dir.path().join("segment.ts");
        std::fs::write(&path, &stored).expect("write");
        assert_eq!(decode_errors(&path), "", "{at} decodes cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_come_while_the_chunk_arrives_and_make_up_the_segment() {
    let mut setup = setup().await;
    setup.config.ladder = ladder();
    setup.config.workers = 3;
    let source = source(&setup);
    setup.start_segmenter();
    let transcoder = Transcoder::start(setup.config.clone());

    // The first chunk's first second only: its parts must come before the rest of it exists.
    let cut = source.len() / 6 / 188 * 188;
    let (head, tail) = source.split_at(cut);
    support::publish_raw_from(&setup.bus, "live", "s1", head, 188 * 70, Duration::from_millis(500), 0).await;
    wait_parts(&setup, "live", "a part of chunk 0 before the chunk is complete", |parts| {
        parts.iter().any(|p| p.sequence == 0 && p.rendition == "360p")
    })
    .await;
    assert!(support::last(&setup.bus, "rendition.ready.live").await.is_none(), "chunk 0 is not complete yet");
    let next = head.chunks(188 * 70).count() as u64;
    support::publish_raw_from(&setup.bus, "live", "s1", tail, 188 * 70, Duration::from_secs(2), next).await;
    support::end(&setup.bus, "live", "s1", next + tail.chunks(188 * 70).count() as u64).await;

    let ready = wait_ready(&setup, "live", 3).await;
    check_parts(&setup, "live", &ready).await;
    drop(transcoder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_chunk_is_replaced_by_one_that_writes_the_same_parts() {
    let mut setup = setup().await;
    setup.config.ladder = ladder();
    let source = source(&setup);
    setup.start_segmenter();
    let first = Transcoder::start(setup.config.clone());

    let cut = source.len() / 6 / 188 * 188;
    let (head, tail) = source.split_at(cut);
    support::publish_raw_from(&setup.bus, "crash", "s1", head, 188 * 70, Duration::from_millis(500), 0).await;
    wait_parts(&setup, "crash", "parts of chunk 0 from the first worker", |parts| {
        parts.iter().filter(|p| p.sequence == 0).count() >= 2
    })
    .await;
    let before = parts(&setup, "crash").await;
    first.kill();
    let next = head.chunks(188 * 70).count() as u64;
    support::publish_raw_from(&setup.bus, "crash", "s1", tail, 188 * 70, Duration::ZERO, next).await;
    support::end(&setup.bus, "crash", "s1", next + tail.chunks(188 * 70).count() as u64).await;

    // The chunk comes back to a worker after the consumer's ack wait; it redoes it from its first byte.
    let second = Transcoder::start(setup.config.clone());
    let ready = wait_ready(&setup, "crash", 3).await;
    check_parts(&setup, "crash", &ready).await;
    // What the first worker announced stands, unchanged: the redo stored the same bytes under the same keys
    // (a different part would have failed the chunk: keys are write-once).
    let after = parts(&setup, "crash").await;
    for part in &before {
        let again = after.iter().find(|p| p.object_key == part.object_key).expect("still announced");
        assert_eq!((again.size_bytes, again.duration), (part.size_bytes, part.duration), "{}", part.object_key);
    }
    drop(second);
}
