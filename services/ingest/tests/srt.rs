//! Ingest end to end: a real nats-server, `ladder_ingest::run` in-process, and ffmpeg publishing over SRT.
//! Every test starts its own nats-server and listener, subscribes (core NATS) to the subjects of its streams
//! before publishing, and checks what ingest published. No segmenter runs here, so nothing publishes
//! `stream.ended`: a session is complete when its END marker has arrived.
//!
//! Needs `ffmpeg` (with libsrt), `ffprobe` and `nats-server` on PATH.

mod support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{ensure, Context, Result};
use ladder_bus::{async_nats, header};
use ladder_ingest::{Config, IngestError};
use support::*;
use tokio_util::sync::CancellationToken;

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
    let js = async_nats::jetstream::new(ingest.nats().client.clone());
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
        passphrase: Some("short".into()),
        ..Config::new("nats://127.0.0.1:1", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    };
    let error = ladder_ingest::run(config, CancellationToken::new()).await.err().context("should fail")?;
    ensure!(matches!(error, IngestError::Config { key: "passphrase", .. }), "{error}");
    Ok(())
}
