//! Segmenters sharing streams on a real nats-server: raw TS is published as ingest publishes it, owners are
//! stopped abruptly (their runtime dropped, as a SIGKILL leaves things) or gracefully, and every chunk must come
//! out exactly once, byte for byte what one uninterrupted chunker cuts.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{header, server::NatsServer, topology, Bus};
use ladder_media::{Chunk, Chunker, CLOCK};
use ladder_proto::{ChunkUploaded, Event, StreamEnded};
use ladder_storage::Storage;
use tokio_util::sync::CancellationToken;

const TARGET: Duration = Duration::from_secs(1);

fn encode(dir: &Path, seconds: u32) -> Vec<u8> {
    let path = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (make test installs it)");
    assert!(status.success());
    std::fs::read(path).expect("source")
}

/// What one uninterrupted chunker cuts from `source`.
fn reference(source: &[u8]) -> Vec<Chunk> {
    let mut chunker = Chunker::new(TARGET.as_secs() * CLOCK);
    let mut chunks = Vec::new();
    for piece in source.chunks(64 * 1316) {
        chunks.extend(chunker.push(piece).expect("valid"));
    }
    chunks.extend(chunker.finish());
    chunks
}

/// A segmenter in a runtime of its own, so it can be dropped the way a killed process disappears.
struct Instance {
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    fn start(nats: &str, media: &Path) -> Instance {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
        let stop = CancellationToken::new();
        let config = ladder_segmenter::Config {
            nats_url: nats.to_string(),
            storage: Storage::local(media).expect("storage"),
            target_duration: TARGET,
            idle_timeout: Duration::from_secs(30),
        };
        let token = stop.clone();
        let done = runtime.spawn(async move {
            if let Err(e) = ladder_segmenter::run(config, token).await {
                panic!("segmenter failed: {e}");
            }
        });
        Instance { runtime: Some(runtime), stop, done: Some(done) }
    }

    /// Gone at once: no lease given back, nothing flushed.
    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// SIGTERM: stop and give the streams back.
    fn terminate(mut self) {
        self.stop.cancel();
        if let (Some(runtime), Some(done)) = (self.runtime.take(), self.done.take()) {
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(15), done).await }).ok();
            runtime.shutdown_background();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Publishes `source` (`seconds` long) on `ingest.ts.<stream>` in small batches as ingest does (same headers and
/// message ids) at twice real time, then the END marker; `between` runs after each second of media with its index.
async fn publish(
    js: &jetstream::Context,
    stream: &str,
    session: &str,
    source: &[u8],
    seconds: usize,
    mut between: impl FnMut(usize),
) {
    // 17 packets: chunk starts fall at varying places inside messages.
    let batches: Vec<&[u8]> = source.chunks(188 * 17).collect();
    let per_second = (batches.len() / seconds).max(1);
    let pause = Duration::from_millis(500 / per_second as u64);
    for (seq, batch) in batches.iter().enumerate() {
        publish_one(js, stream, session, seq as u64, Bytes::copy_from_slice(batch), false).await;
        tokio::time::sleep(pause).await;
        if (seq + 1) % per_second == 0 {
            between((seq + 1) / per_second);
        }
    }
    publish_one(js, stream, session, batches.len() as u64, Bytes::new(), true).await;
}

async fn publish_one(js: &jetstream::Context, stream: &str, session: &str, seq: u64, payload: Bytes, end: bool) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(header::SESSION, session);
    headers.insert(header::SEQUENCE, seq.to_string().as_str());
    headers.insert(header::RECEIVED_MS, (1_700_000_000_000 + seq * 50).to_string().as_str());
    if end {
        headers.insert(header::END, "1");
        headers.insert(header::END_REASON, "disconnected");
    }
    headers.insert("Nats-Msg-Id", format!("ts.{stream}.{session}.{seq}").as_str());
    js.publish_with_headers(topology::ingest_subject(stream), headers, payload)
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// Every `chunk.uploaded` and `stream.ended` of `stream` in the event log, waiting for the end.
async fn events(js: &jetstream::Context, stream: &str) -> (Vec<ChunkUploaded>, StreamEnded) {
    let events = js.get_stream(topology::EVENTS_STREAM).await.expect("events stream");
    let consumer = events
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: String::new(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut chunks = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), messages.next())
            .await
            .expect("the session ends within a minute")
            .expect("a message")
            .expect("no error");
        if !message.subject.ends_with(&format!(".{stream}")) {
            continue;
        }
        match Event::decode(&message.subject, &message.payload).expect("decodes") {
            Event::ChunkUploaded(chunk) => chunks.push(chunk),
            Event::StreamEnded(ended) => return (chunks, ended),
            _ => {}
        }
    }
}

fn check(name: &str, media: &Path, session: &str, expected: &[Chunk], chunks: &[ChunkUploaded], ended: &StreamEnded) {
    assert_eq!(ended.chunk_count as usize, expected.len(), "{name}: chunk count in stream.ended");
    let mut by_sequence: BTreeMap<u64, &ChunkUploaded> = BTreeMap::new();
    for chunk in chunks {
        assert_eq!(chunk.session_id, session);
        assert!(
            by_sequence.insert(chunk.sequence, chunk).is_none(),
            "{name}: chunk {} announced twice",
            chunk.sequence
        );
    }
    let sequences: Vec<u64> = by_sequence.keys().copied().collect();
    assert_eq!(sequences, (0..expected.len() as u64).collect::<Vec<_>>(), "{name}: every chunk once, in order");
    let mut next_pts = None;
    for (sequence, chunk) in &by_sequence {
        let reference = &expected[*sequence as usize];
        let stored = std::fs::read(media.join(&chunk.object_key)).expect("stored chunk");
        assert!(stored == reference.data, "{name}: chunk {sequence} differs from an uninterrupted cut");
        let announced = (chunk.first_pts, chunk.duration, chunk.discontinuity, chunk.size_bytes, &chunk.codecs);
        let cut = (
            reference.first_pts,
            reference.duration,
            reference.discontinuity,
            reference.data.len() as u64,
            &reference.codecs,
        );
        assert_eq!(announced, cut, "{name}: chunk {sequence} is announced as an uninterrupted cut has it");
        assert_eq!(chunk.frame_duration, reference.frame_duration, "{name}: chunk {sequence}");
        if let Some(pts) = next_pts {
            assert_eq!(chunk.first_pts, pts, "{name}: chunk {sequence} starts where the previous one ended");
        }
        next_pts = Some(chunk.first_pts + chunk.duration);
    }
}

#[test]
fn owners_killed_or_stopped_mid_stream_lose_and_repeat_nothing() {
    let _ = tracing_subscriber::fmt().with_env_filter("ladder_segmenter=info").with_test_writer().try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("media");
    let source = encode(dir.path(), 16);
    let expected = reference(&source);
    assert!(expected.len() >= 14, "{} chunks", expected.len());

    let control = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let nats = control.block_on(NatsServer::start(&dir.path().join("nats"), None)).expect("nats-server");
    let js = control.block_on(async { Bus::connect(&nats.url()).await.expect("bus").jetstream().clone() });

    // Two instances from the start; every 3 s of media both are killed (seconds 3 and 9: no lease given back,
    // so it has to expire) or stopped gracefully (6 and 12), and two new ones start.
    let start = || Some(Instance::start(&nats.url(), &media));
    let mut instances: Vec<Option<Instance>> = vec![start(), start()];
    let session = "1700000000000-0000abcd";
    control.block_on(publish(&js, "cam", session, &source, 16, |second| {
        if second % 3 != 0 || second > 12 {
            return;
        }
        for slot in instances.iter_mut() {
            let Some(instance) = slot.take() else { continue };
            if second % 2 == 1 {
                instance.kill();
            } else {
                // From a thread of its own: this runs inside the control runtime.
                std::thread::spawn(move || instance.terminate()).join().expect("terminated");
            }
        }
        instances.push(start());
        instances.push(start());
    }));
    let (chunks, ended) = control.block_on(events(&js, "cam"));
    check("takeovers", &media, session, &expected, &chunks, &ended);
    drop(instances);
}

#[test]
fn two_segmenters_share_two_streams_each_cut_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("media");
    let source = encode(dir.path(), 8);
    let expected = reference(&source);

    let control = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let nats = control.block_on(NatsServer::start(&dir.path().join("nats"), None)).expect("nats-server");
    let js = control.block_on(async { Bus::connect(&nats.url()).await.expect("bus").jetstream().clone() });
    let _a = Instance::start(&nats.url(), &media);
    let _b = Instance::start(&nats.url(), &media);
    let session = "1700000000000-0000beef";
    control.block_on(async {
        tokio::join!(
            publish(&js, "one", session, &source, 8, |_| {}),
            publish(&js, "two", session, &source, 8, |_| {})
        );
    });
    for stream in ["one", "two"] {
        let (chunks, ended) = control.block_on(events(&js, stream));
        check(stream, &media, session, &expected, &chunks, &ended);
    }
}
