//! The transcoder's workers against a real nats-server and the in-process segmenter: a chunk that keeps killing
//! its workers, an ffmpeg over its wall-clock limit, a hostile `ladder.set`, and shutdown handing a chunk back
//! at once.

mod support;

use std::time::{Duration, Instant};

use ladder_bus::topology;
use ladder_proto::{ChunkFailed, Event, LadderSet, RenditionConfig};
use ladder_transcoder::RenditionSpec;
use prost::Message as _;
use support::{last, pull, setup, start, wait_for, Setup};

/// A source made by ffmpeg with one IDR at the start (a single chunk), published as ingest would and cut by the
/// segmenter, which announces it with `chunk.started.<stream>`.
async fn upload(setup: &mut Setup, stream: &str, size: &str, seconds: u32) {
    let source = setup.make_source(
        &format!("{stream}.ts"),
        &format!(
            "-f lavfi -i testsrc=size={size}:rate=25 -t {seconds} -c:v libx264 -preset ultrafast -g 100000 \
             -pix_fmt yuv420p"
        ),
    );
    setup.start_segmenter();
    support::publish_raw(&setup.bus, stream, "s1", &source, 188 * 300, Duration::ZERO).await;
    wait_for(&setup.bus, &format!("chunk.started.{stream}"), Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_keeps_killing_its_workers_ends_as_chunk_failed() {
    let mut setup = setup().await;
    upload(&mut setup, "poison", "320x240", 2).await;
    // Three workers took it and never finished: each delivery ended without an ack (a nak stands in for the ack
    // wait running out, which counts the same).
    for _ in 0..3 {
        let message = pull(&setup.bus, Duration::from_secs(5)).await.expect("delivered");
        message.ack_with(async_nats::jetstream::AckKind::Nak(None)).await.expect("nak");
    }
    let (shutdown, handle) = start(setup.config.clone());
    let failed = wait_for(&setup.bus, "chunk.failed.poison", Duration::from_secs(20)).await;
    let failed = ChunkFailed::decode(failed).expect("decode");
    assert!(failed.reason.starts_with("attempted 3 times without finishing"), "{}", failed.reason);
    assert!(failed.permanent && failed.has_sequence && failed.sequence == 0);
    assert_eq!(last(&setup.bus, "rendition.ready.poison").await, None, "not run a fourth time");
    shutdown.cancel();
    handle.await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ffmpeg_over_its_wall_clock_limit_is_retried_then_failed() {
    let mut setup = setup().await;
    setup.config.ffmpeg_timeout = Duration::from_millis(1);
    upload(&mut setup, "hang", "320x240", 2).await;
    let started = Instant::now();
    let (shutdown, handle) = start(setup.config.clone());
    let failed = wait_for(&setup.bus, "chunk.failed.hang", Duration::from_secs(30)).await;
    let failed = ChunkFailed::decode(failed).expect("decode");
    // The third attempt fails on the limit; on a machine busy enough for an extra redelivery (an ack wait run
    // out), the delivery after it gives up on the count instead. Either way the chunk is failed for good.
    // (ffmpeg::transcode's own test checks the limit itself.)
    assert!(
        failed.reason.contains("0.001s wall-clock limit and was killed")
            || failed.reason.starts_with("attempted 3 times without finishing"),
        "{}",
        failed.reason
    );
    assert!(failed.permanent && failed.has_sequence && failed.sequence == 0);
    assert_eq!(last(&setup.bus, "rendition.ready.hang").await, None, "no rendition came out of a killed ffmpeg");
    // Two ordinary retries, each after the retry delay.
    assert!(started.elapsed() >= 2 * ladder_transcoder::RETRY_DELAY, "{:?}", started.elapsed());
    shutdown.cancel();
    handle.await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_set_from_the_bus_is_validated_before_use() {
    let mut setup = setup().await;
    let set = |stream: &str, name: &str| {
        Event::LadderSet(LadderSet {
            stream: stream.into(),
            renditions: vec![RenditionConfig::from(&RenditionSpec::new(name, 360, 800_000))],
            set_at_ms: 1,
        })
    };
    setup.bus.publish_event(&set("evil", "../../etc")).await.expect("publish");
    setup.bus.publish_event(&set("good", "360p")).await.expect("publish");
    assert_eq!(ladder_transcoder::current_ladder(&setup.bus, "evil").await.expect("read"), None);
    let good = ladder_transcoder::current_ladder(&setup.bus, "good").await.expect("read").expect("a ladder");
    assert_eq!(good[0].name, "360p");

    // A chunk of the hostile stream is transcoded into the default ladder.
    upload(&mut setup, "evil", "320x240", 2).await;
    let (shutdown, handle) = start(setup.config.clone());
    let ready = wait_for(&setup.bus, "rendition.ready.evil", Duration::from_secs(30)).await;
    let ready = ladder_proto::RenditionReady::decode(ready).expect("decode");
    assert_eq!((ready.rendition.as_str(), ready.object_key.as_str()), ("180p", "live/evil/s1/180p/00000000.ts"));
    shutdown.cancel();
    handle.await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_a_long_chunk_back_after_the_grace_period() {
    let mut setup = setup().await;
    // Far longer than the grace period on any machine.
    setup.config.preset = "veryslow".into();
    setup.config.ladder = ladder_transcoder::default_ladder();
    setup.config.ffmpeg_timeout = Duration::from_secs(600);
    upload(&mut setup, "slow", "1280x720", 30).await;
    let (shutdown, handle) = start(setup.config.clone());
    let mut consumer = setup.bus.consumer(topology::TRANSCODER).await.expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.info().await.expect("consumer info").num_ack_pending == 0 {
        assert!(Instant::now() < deadline, "the worker never took the chunk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopping = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(ladder_transcoder::SHUTDOWN_GRACE + Duration::from_secs(5), handle)
        .await
        .expect("stopped within the grace period")
        .expect("stopped");
    let took = stopping.elapsed();
    assert!(
        took >= ladder_transcoder::SHUTDOWN_GRACE - Duration::from_millis(500),
        "gave the chunk its grace: {took:?}"
    );
    // Handed back without delay: another instance gets it now, not after the ack wait.
    let message = pull(&setup.bus, Duration::from_secs(2)).await.expect("redelivered at once");
    assert_eq!(message.info().expect("info").delivered, 2);
    message.ack_with(async_nats::jetstream::AckKind::Term).await.expect("term");
    assert_eq!(last(&setup.bus, "rendition.ready.slow").await, None);
}
