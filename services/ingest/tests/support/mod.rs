//! The harness of the ingest integration tests: a real nats-server, `ladder_ingest::run` in-process (one
//! instance or several on one NATS), ffmpeg publishers over SRT, and checks of what ingest published.
//!
//! Needs `ffmpeg` (with libsrt), `ffprobe` and `nats-server` on PATH.
#![allow(dead_code)] // each test binary uses its part

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures::StreamExt;
use ladder_bus::{async_nats, header, server::NatsServer};
use ladder_ingest::{Config, IngestError};
use ladder_proto::{Event, StreamStarted};
use tokio::{process::Command, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// How long ffmpeg publishes in the tests that let it run to the end.
pub const PUBLISH_SECONDS: f64 = 3.0;

/// A nats-server of a test's own, with a client for the test's checks.
pub struct Nats {
    _dir: tempfile::TempDir,
    server: NatsServer,
    url: String,
    pub client: async_nats::Client,
}

impl Nats {
    pub async fn start() -> Result<Nats> {
        require_tools();
        init_tracing();
        let dir = tempfile::tempdir()?;
        let server = NatsServer::start(dir.path(), None).await?;
        let url = server.url();
        let client = async_nats::connect(&url).await?;
        Ok(Nats { _dir: dir, server, url, client })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Kills nats-server (SIGKILL), waits `down`, and starts it again on the same port and store.
    pub async fn restart(&mut self, down: Duration) -> Result<()> {
        self.server.kill().await;
        tokio::time::sleep(down).await;
        Ok(self.server.restart().await?)
    }

    /// The entry of `stream` in the publisher claims bucket, if it holds a claim (not a delete marker).
    pub async fn claim(&self, stream: &str) -> Result<Option<serde_json::Value>> {
        let kv = self.jetstream().get_key_value(ladder_bus::kv::PUBLISHERS).await?;
        match kv.entry(stream).await? {
            Some(entry) if entry.operation == async_nats::jetstream::kv::Operation::Put => {
                Ok(Some(serde_json::from_slice(&entry.value)?))
            }
            _ => Ok(None),
        }
    }

    /// Waits until `stream` has no claim; how long that took.
    pub async fn until_unclaimed(&self, stream: &str, within: Duration) -> Result<Duration> {
        let started = tokio::time::Instant::now();
        while self.claim(stream).await?.is_some() {
            ensure!(started.elapsed() < within, "stream {stream} still claimed after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(started.elapsed())
    }

    /// Subscribes to the events and TS of `stream`: `stream.started/ended.<stream>` and `ingest.ts.<stream>`
    /// on one subscription, so they arrive in the order ingest published them.
    pub async fn watch(&self, stream: &str) -> Result<Watch> {
        let subscriber = self.client.subscribe(format!("*.*.{stream}")).await?;
        self.client.flush().await?;
        // `*.*.<stream>` also matches the claim's key-value subject, `$KV.ladder_publishers.<stream>`.
        // Not the `$KV` claims, nor the statistics samples (`stats.srt.<stream>`).
        let subscriber = subscriber.filter(|message| {
            std::future::ready(!message.subject.starts_with('$') && !message.subject.starts_with("stats."))
        });
        Ok(Watch { subscriber: subscriber.boxed(), messages: Vec::new() })
    }

    /// Subscribes to every event and TS subject, of any stream.
    pub async fn watch_all(&self) -> Result<Watch> {
        let events = self.client.subscribe("stream.>").await?;
        let ts = self.client.subscribe("ingest.>").await?;
        self.client.flush().await?;
        Ok(Watch { subscriber: futures::stream::select(events, ts).boxed(), messages: Vec::new() })
    }

    /// What JetStream stored for `stream`: its last `stream.started` event and its TS messages, in order.
    pub async fn stored(&self, stream: &str) -> Result<(Option<StreamStarted>, Vec<StoredTs>)> {
        let js = self.jetstream();
        let events = js.get_stream(ladder_bus::topology::EVENTS_STREAM).await?;
        let started = match events.get_last_raw_message_by_subject(&format!("stream.started.{stream}")).await {
            Ok(message) => match Event::decode(&message.subject, &message.payload)? {
                Event::StreamStarted(started) => Some(started),
                other => bail!("not a StreamStarted event: {other:?}"),
            },
            Err(_) => None,
        };
        let mut ingest = js.get_stream(ladder_bus::topology::INGEST_STREAM).await?;
        let state = ingest.info().await?.state.clone();
        let subject = format!("ingest.ts.{stream}");
        let mut ts = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = ingest.get_raw_message(sequence).await else { continue };
            if message.subject.as_str() != subject {
                continue;
            }
            let get = |name: &str| message.headers.get(name).map(|value| value.as_str().to_string());
            ts.push(StoredTs {
                received_ms: get(header::RECEIVED_MS).context("no received header")?.parse()?,
                stored_ms: (message.time.unix_timestamp_nanos() / 1_000_000) as i64,
                session: get(header::SESSION).unwrap_or_default(),
                sequence: get(header::SEQUENCE).context("no sequence header")?.parse()?,
                end_reason: get(header::END).map(|_| get(header::END_REASON).unwrap_or_default()),
                payload: message.payload.to_vec(),
            });
        }
        Ok((started, ts))
    }
}

/// A TS message as JetStream stored it.
pub struct StoredTs {
    pub session: String,
    pub sequence: u64,
    /// `Ladder-End-Reason` of an END marker.
    pub end_reason: Option<String>,
    pub payload: Vec<u8>,
    /// `Ladder-Received-Ms`: when ingest received the bytes.
    pub received_ms: i64,
    /// When JetStream stored the message, in Unix milliseconds.
    pub stored_ms: i64,
}

/// `ladder_ingest::run` in-process, on its own nats-server or on a shared one.
pub struct Ingest {
    nats: Option<Nats>,
    pub port: u16,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), IngestError>>,
}

impl Ingest {
    /// An ingest with a nats-server of its own.
    pub async fn start(passphrase: Option<&str>) -> Result<Ingest> {
        let nats = Nats::start().await?;
        let mut ingest = Ingest::start_on(&nats, passphrase).await?;
        ingest.nats = Some(nats);
        Ok(ingest)
    }

    /// An ingest on `nats`, which other instances may share.
    pub async fn start_on(nats: &Nats, passphrase: Option<&str>) -> Result<Ingest> {
        let port = free_udp_port()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ladder_ingest::run(config(nats, port, passphrase), shutdown.clone()));
        until_listening(port, || task.is_finished()).await?;
        if task.is_finished() {
            bail!("ingest exited during start-up: {:?}", task.await);
        }
        Ok(Ingest { nats: None, port, shutdown, task })
    }

    /// The nats-server of an ingest started with [`Ingest::start`].
    pub fn nats(&self) -> &Nats {
        self.nats.as_ref().expect("started with its own nats-server")
    }

    pub async fn watch(&self, stream: &str) -> Result<Watch> {
        self.nats().watch(stream).await
    }

    pub async fn watch_all(&self) -> Result<Watch> {
        self.nats().watch_all().await
    }

    /// Cancels `run` and checks that it returns in time and without error.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .context("ingest did not stop within 5 s of shutdown")??;
        result.context("ingest returned an error")
    }
}

/// An ingest in a runtime of its own, which [`CrashingIngest::crash`] drops without letting anything run:
/// no session ends, no claim is released, sockets just close, as when the process is killed.
pub struct CrashingIngest {
    pub port: u16,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrashingIngest {
    pub async fn start_on(nats: &Nats) -> Result<CrashingIngest> {
        let port = free_udp_port()?;
        let config = config(nats, port, None);
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            // One thread: once `block_on` returns, no task of this runtime is polled again.
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                tokio::select! {
                    result = ladder_ingest::run(config, CancellationToken::new()) => {
                        eprintln!("crashing ingest returned early: {result:?}");
                    }
                    _ = killed => {}
                }
            });
            drop(runtime);
        });
        let ingest = CrashingIngest { port, kill: Some(kill), thread: Some(thread) };
        let thread_done = |ingest: &CrashingIngest| ingest.thread.as_ref().is_none_or(|t| t.is_finished());
        until_listening(port, || thread_done(&ingest)).await?;
        ensure!(!thread_done(&ingest), "the crashing ingest exited during start-up");
        Ok(ingest)
    }

    pub fn crash(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Open publishing, as `ladder dev` runs: a stream without a key of its own takes `passphrase` (the server's
/// key) if given, else no encryption.
pub fn config(nats: &Nats, port: u16, passphrase: Option<&str>) -> Config {
    Config {
        passphrase: passphrase.map(str::to_string),
        open_publish: true,
        stats_interval: Duration::from_millis(500),
        ..Config::new(nats.url(), SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

/// Waits until ingest has bound its SRT port (the last step of its start-up); `exited` says whether it gave up.
async fn until_listening(port: u16, exited: impl Fn() -> bool) -> Result<()> {
    for _ in 0..200 {
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            // Bound by libsrt, which listens at once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        if exited() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("ingest did not bind its srt port within 10 s")
}

pub struct Watch {
    subscriber: futures::stream::BoxStream<'static, async_nats::Message>,
    messages: Vec<async_nats::Message>,
}

impl Watch {
    /// Collects messages until a TS message with the END header arrives.
    pub async fn until_end_marker(&mut self, within: Duration) -> Result<&[async_nats::Message]> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.subscriber.next())
                .await
                .map_err(|_| anyhow!("no END marker within {within:?}; got {} messages", self.messages.len()))?
                .ok_or_else(|| anyhow!("subscription closed"))?;
            let end = header(&message, header::END).is_some();
            self.messages.push(message);
            if end {
                return Ok(&self.messages);
            }
        }
    }

    /// Collects messages until `count` TS messages have arrived.
    pub async fn until_ts_messages(&mut self, count: usize, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while self.messages.iter().filter(|m| m.subject.starts_with("ingest.ts.")).count() < count {
            let message = tokio::time::timeout_at(deadline, self.subscriber.next())
                .await
                .map_err(|_| anyhow!("fewer than {count} ts messages within {within:?}"))?
                .ok_or_else(|| anyhow!("subscription closed"))?;
            self.messages.push(message);
        }
        Ok(())
    }

    /// Collects whatever arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> &[async_nats::Message] {
        while let Ok(Some(message)) = tokio::time::timeout(wait, self.subscriber.next()).await {
            self.messages.push(message);
        }
        &self.messages
    }
}

pub fn require_tools() {
    for (tool, arg) in [("ffmpeg", "-version"), ("ffprobe", "-version"), ("nats-server", "--version")] {
        let found = std::process::Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(found, "the ingest integration tests need `{tool}` on PATH (ffmpeg with libsrt, nats-server 2.9+)");
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ladder_ingest=info")),
        )
        .with_test_writer()
        .try_init();
}

pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// An ffmpeg publishing `seconds` of test video and audio to ingest in real time.
pub struct Publisher {
    child: tokio::process::Child,
}

impl Publisher {
    /// `stream_id: None` sends no streamid; `options` are extra SRT URL options such as `&passphrase=...`.
    /// The streamid goes into the URL verbatim: ffmpeg 5.1 does not percent-decode it.
    pub fn start(port: u16, stream_id: Option<&str>, options: &str, seconds: f64) -> Result<Publisher> {
        let mut url = format!("srt://127.0.0.1:{port}?pkt_size=1316{options}");
        if let Some(stream_id) = stream_id {
            url.push_str(&format!("&streamid={stream_id}"));
        }
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac"])
            .args(["-t", &seconds.to_string(), "-f", "mpegts", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run ffmpeg")?;
        Ok(Publisher { child })
    }

    /// Waits for ffmpeg to exit; its status and what it printed.
    pub async fn wait(self, within: Duration) -> Result<(ExitStatus, String)> {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .map_err(|_| anyhow!("ffmpeg did not exit within {within:?}"))??;
        Ok((output.status, String::from_utf8_lossy(&output.stderr).into_owned()))
    }
}

/// Publishes to completion and checks that ffmpeg succeeded.
pub async fn publish(port: u16, stream_id: &str, options: &str) -> Result<()> {
    let (status, stderr) = Publisher::start(port, Some(stream_id), options, PUBLISH_SECONDS)?
        .wait(Duration::from_secs_f64(PUBLISH_SECONDS + 10.0))
        .await?;
    ensure!(status.success(), "ffmpeg publishing {stream_id:?} failed ({status}): {stderr}");
    Ok(())
}

/// Runs a publisher that ingest must refuse; returns what ffmpeg printed.
pub async fn publish_refused(port: u16, stream_id: Option<&str>, options: &str) -> Result<String> {
    let (status, stderr) =
        Publisher::start(port, stream_id, options, PUBLISH_SECONDS)?.wait(Duration::from_secs(8)).await?;
    ensure!(!status.success(), "ffmpeg publishing {stream_id:?} should have been refused, it succeeded");
    eprintln!("ffmpeg refused as expected for streamid {stream_id:?}{options}:\n{stderr}");
    Ok(stderr)
}

pub fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|value| value.as_str())
}

// === checking a session ===

/// What one complete session looked like on NATS.
#[derive(Debug)]
pub struct Session {
    pub started: StreamStarted,
    /// `Ladder-End-Reason` of the END marker.
    pub reason: String,
    pub ts: Vec<u8>,
    pub messages: usize,
}

/// Checks the contract of one publish session of `stream` in `messages` (as received, in order): started
/// event first, then TS messages of whole packets with consecutive sequence numbers, then the END marker.
pub fn check_session(stream: &str, messages: &[async_nats::Message]) -> Result<Session> {
    let mut iter = messages.iter();
    let first = iter.next().ok_or_else(|| anyhow!("no messages"))?;
    ensure!(first.subject.as_str() == format!("stream.started.{stream}"), "first message is on {}", first.subject);
    let Event::StreamStarted(started) = Event::decode(&first.subject, &first.payload)? else {
        bail!("not a StreamStarted event");
    };
    ensure!(started.stream == stream);
    ensure!(started.remote_addr.starts_with("127.0.0.1:"), "remote_addr {:?}", started.remote_addr);
    let session = started.session_id.clone();
    ensure!(
        session.len() == 22
            && session.starts_with(&format!("{:013}-", started.started_at_ms))
            && session[14..].bytes().all(|b| b.is_ascii_hexdigit()),
        "session id {session:?} is not <started_at_ms:013>-<8 hex>"
    );

    let ts_subject = format!("ingest.ts.{stream}");
    let mut ts = Vec::new();
    let mut sequence = 0u64;
    let mut last_received_ms = started.started_at_ms;
    let mut end_seen = false;
    let mut reason = None;
    for message in iter.by_ref() {
        ensure!(message.subject.as_str() == ts_subject, "expected ts, got a message on {}", message.subject);
        ensure!(header(message, header::SESSION) == Some(session.as_str()), "session header");
        let seq: u64 = header(message, header::SEQUENCE).ok_or_else(|| anyhow!("no sequence header"))?.parse()?;
        ensure!(seq == sequence, "sequence {seq} where {sequence} was expected");
        ensure!(
            header(message, "Nats-Msg-Id") == Some(format!("ts.{stream}.{session}.{seq}").as_str()),
            "message id {:?}",
            header(message, "Nats-Msg-Id")
        );
        sequence += 1;
        if header(message, header::END).is_some() {
            ensure!(header(message, header::END) == Some("1"));
            ensure!(message.payload.is_empty(), "the END marker has a payload");
            reason = header(message, header::END_REASON).map(str::to_string);
            end_seen = true;
            break;
        }
        let payload = &message.payload;
        ensure!(!payload.is_empty(), "empty ts message {seq} without END");
        ensure!(payload.len() % 188 == 0, "message {seq} has {} bytes, not whole ts packets", payload.len());
        ensure!(payload.len() <= 64 * 1024, "message {seq} has {} bytes", payload.len());
        ensure!(payload.chunks(188).all(|packet| packet[0] == 0x47), "message {seq} has a packet without sync byte");
        let received_ms: i64 =
            header(message, header::RECEIVED_MS).ok_or_else(|| anyhow!("no received header"))?.parse()?;
        ensure!(received_ms >= last_received_ms, "received time went backwards at {seq}");
        last_received_ms = received_ms;
        ts.extend_from_slice(payload);
    }
    ensure!(end_seen, "no END marker");
    let reason = reason.ok_or_else(|| anyhow!("the END marker has no reason header"))?;
    ensure!(iter.next().is_none(), "messages after the END marker");
    Ok(Session { started, reason, ts, messages: sequence as usize })
}

/// Checks that a full publish arrived: about `PUBLISH_SECONDS` of TS, at most 64 KiB or ~50 ms per message.
pub fn check_complete(session: &Session) -> Result<()> {
    ensure!(session.reason == "disconnected", "reason {:?}", session.reason);
    // 3 s of 320x240 x264 + AAC is well over 100 KB; batches of 50 ms make dozens of messages.
    ensure!(session.ts.len() > 100_000, "only {} ts bytes", session.ts.len());
    ensure!(session.messages as f64 > 3.0 * PUBLISH_SECONDS, "only {} messages", session.messages);
    Ok(())
}

/// Checks with ffprobe that the forwarded bytes are a playable TS of about the published duration.
pub async fn probe_duration(ts: &[u8]) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.ts");
    tokio::fs::write(&path, ts).await?;
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .await
        .context("cannot run ffprobe")?;
    ensure!(output.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

pub fn subjects(messages: &[async_nats::Message]) -> Vec<String> {
    messages.iter().map(|m| m.subject.to_string()).collect()
}
