//! Ingest end to end: a real nats-server, `ladder_ingest::run` in-process, and ffmpeg publishing over SRT.
//! Every test starts its own nats-server and listener, subscribes (core NATS) to the subjects of its streams
//! before publishing, and checks what ingest published. No segmenter runs here, so nothing publishes
//! `stream.ended`: a session is complete when its END marker has arrived.
//!
//! Needs `ffmpeg` (with libsrt), `ffprobe` and `nats-server` on PATH.

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
const PUBLISH_SECONDS: f64 = 3.0;

// === harness ===

struct Ingest {
    _dir: tempfile::TempDir,
    _nats: NatsServer,
    client: async_nats::Client,
    port: u16,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), IngestError>>,
}

impl Ingest {
    async fn start(passphrase: Option<&str>) -> Result<Ingest> {
        require_tools();
        init_tracing();
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start(dir.path(), None).await?;
        let port = free_udp_port()?;
        let shutdown = CancellationToken::new();
        let config = Config {
            nats_url: nats.url(),
            srt_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            passphrase: passphrase.map(str::to_string),
            latency: Duration::from_millis(120),
        };
        let task = tokio::spawn(ladder_ingest::run(config, shutdown.clone()));
        let client = async_nats::connect(nats.url()).await?;
        // `run` binds the SRT listener right after creating the JetStream topology; ffmpeg retries its
        // handshake for 3 s, so a publisher that starts a moment early still gets through.
        let js = async_nats::jetstream::new(client.clone());
        let mut ready = false;
        for _ in 0..100 {
            if js.get_stream(ladder_bus::topology::EVENTS_STREAM).await.is_ok() {
                ready = true;
                break;
            }
            if task.is_finished() {
                bail!("ingest exited during start-up: {:?}", task.await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(ready, "ingest did not create the jetstream topology within 5 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Ingest { _dir: dir, _nats: nats, client, port, shutdown, task })
    }

    /// Subscribes to the events and TS of `stream`: `stream.started/ended.<stream>` and `ingest.ts.<stream>`
    /// on one subscription, so they arrive in the order ingest published them.
    async fn watch(&self, stream: &str) -> Result<Watch> {
        let subscriber = self.client.subscribe(format!("*.*.{stream}")).await?;
        self.client.flush().await?;
        Ok(Watch { subscriber: subscriber.boxed(), messages: Vec::new() })
    }

    /// Subscribes to every event and TS subject, of any stream.
    async fn watch_all(&self) -> Result<Watch> {
        let events = self.client.subscribe("stream.>").await?;
        let ts = self.client.subscribe("ingest.>").await?;
        self.client.flush().await?;
        Ok(Watch { subscriber: futures::stream::select(events, ts).boxed(), messages: Vec::new() })
    }

    /// Cancels `run` and checks that it returns in time and without error.
    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .context("ingest did not stop within 5 s of shutdown")??;
        result.context("ingest returned an error")
    }
}

struct Watch {
    subscriber: futures::stream::BoxStream<'static, async_nats::Message>,
    messages: Vec<async_nats::Message>,
}

impl Watch {
    /// Collects messages until a TS message with the END header arrives.
    async fn until_end_marker(&mut self, within: Duration) -> Result<&[async_nats::Message]> {
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
    async fn until_ts_messages(&mut self, count: usize, within: Duration) -> Result<()> {
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
    async fn drain(&mut self, wait: Duration) -> &[async_nats::Message] {
        while let Ok(Some(message)) = tokio::time::timeout(wait, self.subscriber.next()).await {
            self.messages.push(message);
        }
        &self.messages
    }
}

fn require_tools() {
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

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ladder_ingest=info")),
        )
        .with_test_writer()
        .try_init();
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// An ffmpeg publishing `seconds` of test video and audio to ingest in real time.
struct Publisher {
    child: tokio::process::Child,
}

impl Publisher {
    /// `stream_id: None` sends no streamid; `options` are extra SRT URL options such as `&passphrase=...`.
    /// The streamid goes into the URL verbatim: ffmpeg 5.1 does not percent-decode it.
    fn start(port: u16, stream_id: Option<&str>, options: &str, seconds: f64) -> Result<Publisher> {
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
    async fn wait(self, within: Duration) -> Result<(ExitStatus, String)> {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .map_err(|_| anyhow!("ffmpeg did not exit within {within:?}"))??;
        Ok((output.status, String::from_utf8_lossy(&output.stderr).into_owned()))
    }
}

/// Publishes to completion and checks that ffmpeg succeeded.
async fn publish(port: u16, stream_id: &str, options: &str) -> Result<()> {
    let (status, stderr) = Publisher::start(port, Some(stream_id), options, PUBLISH_SECONDS)?
        .wait(Duration::from_secs_f64(PUBLISH_SECONDS + 10.0))
        .await?;
    ensure!(status.success(), "ffmpeg publishing {stream_id:?} failed ({status}): {stderr}");
    Ok(())
}

/// Runs a publisher that ingest must refuse; returns what ffmpeg printed.
async fn publish_refused(port: u16, stream_id: Option<&str>, options: &str) -> Result<String> {
    let (status, stderr) =
        Publisher::start(port, stream_id, options, PUBLISH_SECONDS)?.wait(Duration::from_secs(8)).await?;
    ensure!(!status.success(), "ffmpeg publishing {stream_id:?} should have been refused, it succeeded");
    eprintln!("ffmpeg refused as expected for streamid {stream_id:?}{options}:\n{stderr}");
    Ok(stderr)
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|value| value.as_str())
}

// === checking a session ===

/// What one complete session looked like on NATS.
#[derive(Debug)]
struct Session {
    started: StreamStarted,
    /// `Ladder-End-Reason` of the END marker.
    reason: String,
    ts: Vec<u8>,
    messages: usize,
}

/// Checks the contract of one publish session of `stream` in `messages` (as received, in order): started
/// event first, then TS messages of whole packets with consecutive sequence numbers, then the END marker.
fn check_session(stream: &str, messages: &[async_nats::Message]) -> Result<Session> {
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
fn check_complete(session: &Session) -> Result<()> {
    ensure!(session.reason == "disconnected", "reason {:?}", session.reason);
    // 3 s of 320x240 x264 + AAC is well over 100 KB; batches of 50 ms make dozens of messages.
    ensure!(session.ts.len() > 100_000, "only {} ts bytes", session.ts.len());
    ensure!(session.messages as f64 > 3.0 * PUBLISH_SECONDS, "only {} messages", session.messages);
    Ok(())
}

/// Checks with ffprobe that the forwarded bytes are a playable TS of about the published duration.
async fn probe_duration(ts: &[u8]) -> Result<f64> {
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

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_streamid_publishes_a_complete_session() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut watch = ingest.watch("alpha").await?;
    publish(ingest.port, "#!::r=alpha,m=publish", "").await?;
    let messages = watch.until_end_marker(Duration::from_secs(10)).await?;
    let session = check_session("alpha", messages)?;
    check_complete(&session)?;
    // `stream.ended` is the segmenter's to publish, with the final chunk count.
    let after = watch.drain(Duration::from_millis(300)).await;
    ensure!(after.len() == 1 + session.messages, "ingest published after the END marker: {:?}", subjects(after));
    let duration = probe_duration(&session.ts).await?;
    ensure!((2.0..=3.5).contains(&duration), "forwarded ts lasts {duration} s");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_names_and_concurrent_publishers_arrive_independently() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut plain = ingest.watch("cam-1").await?;
    let mut other = ingest.watch("cam_2").await?;
    // Two publishers at once, one with a plain name, one with reordered access control keys and a user.
    let (a, b) =
        tokio::join!(publish(ingest.port, "cam-1", ""), publish(ingest.port, "#!::u=bob,m=publish,r=cam_2", ""));
    a?;
    b?;
    let first = check_session("cam-1", plain.until_end_marker(Duration::from_secs(10)).await?)?;
    let second = check_session("cam_2", other.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&first)?;
    check_complete(&second)?;
    ensure!(first.started.session_id != second.started.session_id);
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_stream_ids_are_refused_at_the_handshake() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut watch = ingest.watch_all().await?;
    let too_long = "a".repeat(65);
    let refused =
        [Some("bad/name"), Some("#!::r=viewer,m=request"), Some(too_long.as_str()), Some("#!::u=alice"), None];
    let results = futures::future::join_all(refused.iter().map(|id| publish_refused(ingest.port, *id, ""))).await;
    for (id, result) in refused.iter().zip(results) {
        let stderr = result.with_context(|| format!("streamid {id:?}"))?;
        ensure!(
            stderr.contains("Connection") || stderr.contains("srt"),
            "unexpected ffmpeg output for {id:?}: {stderr}"
        );
    }
    let published = watch.drain(Duration::from_millis(300)).await;
    ensure!(published.is_empty(), "refused publishers produced messages on {:?}", subjects(published));
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_on_a_live_stream_is_refused() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut watch = ingest.watch("dup").await?;
    let first = Publisher::start(ingest.port, Some("dup"), "", PUBLISH_SECONDS)?;
    watch.until_ts_messages(1, Duration::from_secs(5)).await?;
    publish_refused(ingest.port, Some("#!::r=dup,m=publish"), "").await?;
    let (status, stderr) = first.wait(Duration::from_secs_f64(PUBLISH_SECONDS + 10.0)).await?;
    ensure!(status.success(), "the first publisher failed: {stderr}");
    let session = check_session("dup", watch.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&session)?;
    // Once the first publisher is gone the name is free again.
    let mut again = ingest.watch("dup").await?;
    publish(ingest.port, "dup", "").await?;
    let next = check_session("dup", again.until_end_marker(Duration::from_secs(10)).await?)?;
    ensure!(next.started.session_id > session.started.session_id, "session ids sort by time");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_admits_only_publishers_that_know_it() -> Result<()> {
    let passphrase = "correct-horse-battery";
    let ingest = Ingest::start(Some(passphrase)).await?;
    let mut secure = ingest.watch("secure").await?;
    let mut secure256 = ingest.watch("secure256").await?;
    let mut others = ingest.watch_all().await?;
    let right = format!("&passphrase={passphrase}");
    let right256 = format!("&passphrase={passphrase}&pbkeylen=32");
    let (accepted, accepted256, wrong, missing, aes256) = tokio::join!(
        publish(ingest.port, "secure", &right),
        publish(ingest.port, "secure256", &right256),
        publish_refused(ingest.port, Some("wrongkey"), "&passphrase=not-the-passphrase"),
        publish_refused(ingest.port, Some("nokey"), ""),
        publish_refused(ingest.port, Some("wrong256"), "&passphrase=not-the-passphrase&pbkeylen=32"),
    );
    accepted?;
    accepted256.context("right passphrase with aes-256")?;
    wrong.context("wrong passphrase")?;
    missing.context("no passphrase")?;
    aes256.context("wrong passphrase with aes-256")?;
    let session = check_session("secure", secure.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&session)?;
    // Decrypted: the payload is TS again, not ciphertext.
    ensure!(probe_duration(&session.ts).await? > 2.0);
    let session = check_session("secure256", secure256.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&session)?;
    ensure!(probe_duration(&session.ts).await? > 2.0);
    let published = others.drain(Duration::from_millis(300)).await;
    let refused: Vec<_> =
        subjects(published).into_iter().filter(|s| !s.ends_with(".secure") && !s.ends_with(".secure256")).collect();
    ensure!(refused.is_empty(), "refused publishers produced messages on {refused:?}");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_listener_refuses_an_encrypting_publisher() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut watch = ingest.watch_all().await?;
    publish_refused(ingest.port, Some("secret"), "&passphrase=some-passphrase").await?;
    let published = watch.drain(Duration::from_millis(300)).await;
    ensure!(published.is_empty(), "messages on {:?}", subjects(published));
    // The listener survived the attempt.
    let mut after = ingest.watch("after").await?;
    let publisher = Publisher::start(ingest.port, Some("after"), "", 1.0)?;
    after.until_ts_messages(1, Duration::from_secs(5)).await?;
    let (status, stderr) = publisher.wait(Duration::from_secs(10)).await?;
    ensure!(status.success(), "{stderr}");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_sessions_with_an_end_marker() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let mut watch = ingest.watch("longrun").await?;
    let publisher = Publisher::start(ingest.port, Some("longrun"), "", 30.0)?;
    watch.until_ts_messages(5, Duration::from_secs(5)).await?;
    let stopping = tokio::time::Instant::now();
    ingest.shutdown.cancel();
    let messages = watch.until_end_marker(Duration::from_secs(5)).await?;
    let session = check_session("longrun", messages)?;
    ensure!(session.reason == "shutdown", "reason {:?}", session.reason);
    ensure!(session.messages >= 6);
    let result = tokio::time::timeout(Duration::from_secs(5), ingest.task).await.context("run did not return")??;
    result.context("run returned an error")?;
    ensure!(stopping.elapsed() < Duration::from_secs(3), "shutdown took {:?}", stopping.elapsed());
    drop(publisher);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_publishing_fails_ends_alone() -> Result<()> {
    const LIMIT: usize = 25;
    let ingest = Ingest::start(None).await?;
    // JetStream refuses a 26th message on any one TS subject, so a long session fails part way while a short
    // one on another subject gets through.
    let js = async_nats::jetstream::new(ingest.client.clone());
    let mut config = js.get_stream(ladder_bus::topology::INGEST_STREAM).await?.info().await?.config.clone();
    config.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    config.discard_new_per_subject = true;
    config.max_messages_per_subject = LIMIT as i64;
    js.update_stream(config).await?;

    let mut limited = ingest.watch("limited").await?;
    let mut free = ingest.watch("free").await?;
    let long = Publisher::start(ingest.port, Some("limited"), "", PUBLISH_SECONDS)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, stderr) = Publisher::start(ingest.port, Some("free"), "", 0.5)?.wait(Duration::from_secs(10)).await?;
    ensure!(status.success(), "the short publisher failed: {stderr}");
    let short = check_session("free", free.until_end_marker(Duration::from_secs(10)).await?)?;
    ensure!(short.reason == "disconnected", "reason {:?}", short.reason);
    ensure!(short.messages <= LIMIT && !short.ts.is_empty(), "{} messages", short.messages);

    // The core subscription also sees publishes that JetStream refused (and their retries), so what was
    // stored is read back from the stream: the first 25 TS messages, not the END marker.
    let messages = limited.until_end_marker(Duration::from_secs(15)).await?;
    let (end, seen) = messages.split_last().context("no messages")?;
    let reason = header(end, header::END_REASON).unwrap_or_default();
    ensure!(reason.starts_with("error: "), "END reason {reason:?}");
    ensure!(seen[0].subject.starts_with("stream.started."));
    for (i, message) in seen[1..].iter().take(LIMIT).enumerate() {
        ensure!(header(message, header::SEQUENCE) == Some(i.to_string().as_str()), "message {i} out of order");
    }
    let stored = js
        .get_stream(ladder_bus::topology::INGEST_STREAM)
        .await?
        .get_last_raw_message_by_subject("ingest.ts.limited")
        .await?;
    let last_seq = stored.headers.get(header::SEQUENCE).map(|v| v.as_str().to_string());
    ensure!(last_seq == Some((LIMIT - 1).to_string()), "last stored sequence {last_seq:?}");
    ensure!(stored.headers.get(header::END).is_none(), "JetStream refused the END marker too");
    drop(long);
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_passphrase_is_a_configuration_error() -> Result<()> {
    let config = Config {
        nats_url: "nats://127.0.0.1:1".into(),
        srt_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        passphrase: Some("short".into()),
        latency: Duration::from_millis(120),
    };
    let error = ladder_ingest::run(config, CancellationToken::new()).await.err().context("should fail")?;
    ensure!(matches!(error, IngestError::Config { key: "passphrase", .. }), "{error}");
    Ok(())
}

fn subjects(messages: &[async_nats::Message]) -> Vec<String> {
    messages.iter().map(|m| m.subject.to_string()).collect()
}
