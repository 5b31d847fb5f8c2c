//! What the transcoder's tests share: a real nats-server, local storage, and a source published the way the
//! stack publishes it: raw TS messages of one session on `ingest.ts.<stream>` as ingest sends them (headers,
//! message ids, an END marker), cut and announced by the real segmenter running in-process.
#![allow(dead_code)]

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use bytes::Bytes;
use ladder_bus::{header, server::NatsServer, topology, Bus};
use ladder_storage::Storage;
use ladder_transcoder::{Config, RenditionSpec};
use tokio_util::sync::CancellationToken;

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub _nats: NatsServer,
    pub bus: Bus,
    pub config: Config,
    segmenter: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.segmenter {
            stop.cancel();
        }
    }
}

pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path(), None).await.expect("nats-server");
    let bus = Bus::connect(&nats.url()).await.expect("bus");
    let storage = Storage::local(&dir.path().join("media")).expect("storage");
    let config = Config {
        nats_url: nats.url(),
        storage,
        workers: 1,
        ladder: vec![RenditionSpec::new("180p", 180, 300_000)],
        preset: "veryfast".into(),
        ffmpeg_timeout: Duration::from_secs(60),
        part_target: Duration::from_millis(500),
    };
    Setup { dir, _nats: nats, bus, config, segmenter: None }
}

impl Setup {
    /// Starts the segmenter in-process (2 s chunks), reading what is published on `ingest.ts.*`.
    pub fn start_segmenter(&mut self) {
        let config = ladder_segmenter::Config {
            nats_url: self.config.nats_url.clone(),
            storage: self.config.storage.clone(),
            target_duration: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            ladder_segmenter::run(config, token).await.expect("segmenter runs");
        });
        self.segmenter = Some((stop, handle));
    }

    /// An ffmpeg-made MPEG-TS source; `args` are whitespace-separated input and codec options.
    pub fn make_source(&self, name: &str, args: &str) -> Vec<u8> {
        make_source(self.dir.path(), name, args)
    }
}

pub fn make_source(dir: &Path, name: &str, args: &str) -> Vec<u8> {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (make test installs it)");
    assert!(status.success(), "ffmpeg made {name}");
    std::fs::read(&path).expect("source")
}

/// Publishes `source` on `ingest.ts.<stream>` as session `session`, in messages of `piece` bytes as ingest
/// does, spread over `over` (all at once for zero), then the END marker.
pub async fn publish_raw(bus: &Bus, stream: &str, session: &str, source: &[u8], piece: usize, over: Duration) {
    publish_raw_from(bus, stream, session, source, piece, over, 0).await;
    end(bus, stream, session, source.chunks(piece).count() as u64).await;
}

/// Publishes `bytes` as messages numbered from `first` (`Ladder-Seq`), spread over `over`.
pub async fn publish_raw_from(
    bus: &Bus,
    stream: &str,
    session: &str,
    bytes: &[u8],
    piece: usize,
    over: Duration,
    first: u64,
) {
    let js = bus.jetstream();
    let pieces: Vec<&[u8]> = bytes.chunks(piece).collect();
    let pause = over / pieces.len().max(1) as u32;
    for (i, bytes) in pieces.iter().enumerate() {
        publish_one(js, stream, session, first + i as u64, Bytes::copy_from_slice(bytes), false).await;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The END marker of a session, numbered `seq`.
pub async fn end(bus: &Bus, stream: &str, session: &str, seq: u64) {
    publish_one(bus.jetstream(), stream, session, seq, Bytes::new(), true).await;
}

async fn publish_one(js: &jetstream::Context, stream: &str, session: &str, seq: u64, payload: Bytes, end: bool) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(header::SESSION, session);
    headers.insert(header::SEQUENCE, seq.to_string().as_str());
    headers.insert(header::RECEIVED_MS, ladder_bus::now_ms().to_string().as_str());
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

pub async fn last(bus: &Bus, subject: &str) -> Option<Bytes> {
    bus.last_message(topology::EVENTS_STREAM, subject).await.expect("read stream")
}

pub async fn wait_for(bus: &Bus, subject: &str, timeout: Duration) -> Bytes {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(payload) = last(bus, subject).await {
            return payload;
        }
        assert!(Instant::now() < deadline, "no {subject} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn start(config: Config) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { ladder_transcoder::run(config, token).await.expect("transcoder runs") });
    (shutdown, handle)
}

/// Takes the next chunk message off the transcoder's consumer, as a worker would.
pub async fn pull(bus: &Bus, timeout: Duration) -> Option<async_nats::jetstream::Message> {
    use futures::StreamExt;
    let consumer = bus.consumer(topology::TRANSCODER).await.expect("consumer");
    let mut batch = consumer.fetch().max_messages(1).expires(timeout).messages().await.expect("fetch");
    batch.next().await.map(|message| message.expect("message"))
}

/// Every message on a subject of a JetStream stream so far, in order.
pub async fn all(bus: &Bus, stream: &str, subject: &str) -> Vec<async_nats::jetstream::Message> {
    use futures::StreamExt;
    let stream = bus.jetstream().get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_string(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while out.len() < pending {
        match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            Ok(Some(Ok(message))) => out.push(message),
            _ => break,
        }
    }
    out
}
