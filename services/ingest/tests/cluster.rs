//! Several ingest instances on one NATS, an ingest that dies, and NATS going away under a live publisher.
//! Real nats-server, `ladder_ingest::run` in-process (each instance on its own SRT port) and ffmpeg
//! publishers.
//!
//! Needs `ffmpeg` (with libsrt), `ffprobe` and `nats-server` on PATH.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ladder_bus::{async_nats, kv::LEASE_TTL};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_has_one_live_publisher_across_instances() -> Result<()> {
    let nats = Nats::start().await?;
    let a = Ingest::start_on(&nats, None).await?;
    let b = Ingest::start_on(&nats, None).await?;
    let mut watch = nats.watch("shared").await?;

    let first = Publisher::start(a.port, Some("shared"), "", PUBLISH_SECONDS)?;
    watch.until_ts_messages(1, Duration::from_secs(5)).await?;
    let claim = nats.claim("shared").await?.context("no claim while the first publisher is live")?;
    ensure!(claim["listen"] == format!("127.0.0.1:{}", a.port), "claim {claim}");
    ensure!(claim["pid"] == std::process::id(), "claim {claim}");
    ensure!(claim["remote"].as_str().is_some_and(|remote| remote.starts_with("127.0.0.1:")), "claim {claim}");
    ensure!(claim["host"].as_str().is_some_and(|host| !host.is_empty()), "claim {claim}");

    // The same name on the other instance, and again on the first one, while the first publisher is live.
    let (on_b, on_a) = tokio::join!(
        publish_refused(b.port, Some("#!::r=shared,m=publish"), ""),
        publish_refused(a.port, Some("shared"), "")
    );
    on_b.context("second publisher on the other instance")?;
    on_a.context("second publisher on the same instance")?;

    let (status, stderr) = first.wait(Duration::from_secs_f64(PUBLISH_SECONDS + 10.0)).await?;
    ensure!(status.success(), "the first publisher failed: {stderr}");
    let session = check_session("shared", watch.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&session)?;
    ensure!(claim["session"] == session.started.session_id, "claim {claim} names another session");
    // Released with the END marker, not left to expire.
    let released = nats.until_unclaimed("shared", LEASE_TTL).await?;
    eprintln!("claim released {released:?} after the end marker was seen");
    ensure!(released < Duration::from_secs(1), "claim released only after {released:?}");

    let mut again = nats.watch("shared").await?;
    let second = Publisher::start(b.port, Some("shared"), "", PUBLISH_SECONDS)?;
    again.until_ts_messages(1, Duration::from_secs(5)).await?;
    let claim = nats.claim("shared").await?.context("no claim for the second publisher")?;
    ensure!(claim["listen"] == format!("127.0.0.1:{}", b.port), "claim {claim}");
    let (status, stderr) = second.wait(Duration::from_secs_f64(PUBLISH_SECONDS + 10.0)).await?;
    ensure!(status.success(), "the publisher on the other instance failed: {stderr}");
    let next = check_session("shared", again.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&next)?;
    ensure!(next.started.session_id > session.started.session_id);
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_of_a_crashed_ingest_is_free_within_seconds() -> Result<()> {
    let nats = Nats::start().await?;
    let doomed = CrashingIngest::start_on(&nats).await?;
    let survivor = Ingest::start_on(&nats, None).await?;
    let mut watch = nats.watch("orphan").await?;
    let publisher = Publisher::start(doomed.port, Some("orphan"), "", 30.0)?;
    watch.until_ts_messages(3, Duration::from_secs(5)).await?;
    ensure!(nats.claim("orphan").await?.is_some(), "no claim while publishing");
    publish_refused(survivor.port, Some("orphan"), "").await.context("while the first ingest is alive")?;

    doomed.crash();
    drop(publisher);
    // Nothing released it: it is still there, until the bucket's max_age expires it.
    ensure!(nats.claim("orphan").await?.is_some(), "the crashed ingest released its claim");
    let freed = nats.until_unclaimed("orphan", Duration::from_secs(10)).await?;
    eprintln!("claim of the crashed ingest expired after {freed:?} (lease ttl {LEASE_TTL:?})");
    ensure!(freed <= LEASE_TTL + Duration::from_secs(2), "the name was freed only after {freed:?}");

    let mut again = nats.watch("orphan").await?;
    publish(survivor.port, "orphan", "").await.context("publisher on the surviving ingest")?;
    let session = check_session("orphan", again.until_end_marker(Duration::from_secs(10)).await?)?;
    check_complete(&session)?;
    survivor.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_claim_is_taken_stops_publishing() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let nats = ingest.nats();
    let mut watch = nats.watch("stolen").await?;
    let publisher = Publisher::start(ingest.port, Some("stolen"), "", 30.0)?;
    watch.until_ts_messages(3, Duration::from_secs(5)).await?;
    // Another holder overwrites the key, as an ingest that took an expired claim would.
    let kv = nats.jetstream().get_key_value(ladder_bus::kv::PUBLISHERS).await?;
    kv.put("stolen", r#"{"host":"elsewhere","session":"theirs"}"#.into()).await?;
    // The session notices at its next renewal, closes the connection (ffmpeg fails) and publishes nothing more,
    // not even an END marker, which would land in the other publisher's stream.
    let (status, _) = publisher.wait(Duration::from_secs(10)).await.context("ffmpeg was not disconnected")?;
    ensure!(!status.success(), "ffmpeg should have lost its connection");
    let after = watch.drain(Duration::from_secs(1)).await;
    ensure!(after.iter().all(|m| header(m, ladder_bus::header::END).is_none()), "an END marker was published");
    let count = after.len();
    let after = watch.drain(Duration::from_secs(1)).await;
    ensure!(after.len() == count, "still publishing after the claim was taken");
    let claim = nats.claim("stolen").await?.context("the other holder's claim was deleted")?;
    ensure!(claim["session"] == "theirs", "claim {claim}");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_another_session_on_the_subject_stops_the_session() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let nats = ingest.nats();
    let mut watch = nats.watch("crossed").await?;
    let publisher = Publisher::start(ingest.port, Some("crossed"), "", 30.0)?;
    watch.until_ts_messages(3, Duration::from_secs(5)).await?;
    // What a publisher whose claim expired unnoticed could still get stored.
    let foreign = async_nats::jetstream::message::PublishMessage::build()
        .payload(vec![0x47; 188].into())
        .message_id("ts.crossed.other-session.0")
        .header(ladder_bus::header::SESSION, "other-session")
        .header(ladder_bus::header::SEQUENCE, "0")
        .header(ladder_bus::header::RECEIVED_MS, ladder_bus::now_ms().to_string());
    nats.jetstream().send_publish("ingest.ts.crossed", foreign).await?.await?;
    // JetStream refuses the session's next message, so it stops: connection closed, no END marker.
    let (status, _) = publisher.wait(Duration::from_secs(10)).await.context("ffmpeg was not disconnected")?;
    ensure!(!status.success(), "ffmpeg should have lost its connection");
    let (_, stored) = nats.stored("crossed").await?;
    let last = stored.last().context("nothing stored")?;
    ensure!(last.session == "other-session", "the session published after the foreign message");
    ensure!(stored.iter().all(|message| message.end_reason.is_none()), "an END marker was stored");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_publish_loses_no_ts_message() -> Result<()> {
    const SECONDS: f64 = 10.0;
    const OUTAGE: Duration = Duration::from_secs(4);
    let mut nats = Nats::start().await?;
    let ingest = Ingest::start_on(&nats, None).await?;
    let mut watch = nats.watch("steady").await?;
    let publisher = Publisher::start(ingest.port, Some("steady"), "", SECONDS)?;
    watch.until_ts_messages(20, Duration::from_secs(5)).await?;
    drop(watch);
    // Longer than the claim's lifetime: the claim expires while NATS is down and is taken again after.
    nats.restart(OUTAGE).await?;

    let (status, stderr) = publisher.wait(Duration::from_secs_f64(SECONDS + 10.0)).await?;
    ensure!(status.success(), "the publisher was dropped: {stderr}");
    // The test's own client reconnects too; then wait for the END marker in the stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (started, ts) = loop {
        let stored = nats.stored("steady").await;
        if let Ok((started, ts)) = stored {
            if ts.last().is_some_and(|last| last.end_reason.is_some()) {
                break (started, ts);
            }
        }
        ensure!(tokio::time::Instant::now() < deadline, "no END marker stored within 20 s of the publisher's end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started = started.context("no stream.started stored")?;
    let mut bytes = Vec::new();
    for (i, message) in ts.iter().enumerate() {
        ensure!(message.session == started.session_id, "message {i} of session {}", message.session);
        ensure!(
            message.sequence == i as u64,
            "stored sequence {} at position {i}: a gap or a duplicate",
            message.sequence
        );
        bytes.extend_from_slice(&message.payload);
    }
    // The bytes that arrived while NATS was down were queued, and stored once it was back.
    let queued = ts.iter().map(|message| message.stored_ms - message.received_ms).max().unwrap_or_default();
    ensure!(queued >= OUTAGE.as_millis() as i64 / 2, "no message waited out the outage (longest wait {queued} ms)");
    let end = ts.last().and_then(|last| last.end_reason.clone()).unwrap_or_default();
    ensure!(end == "disconnected", "END reason {end:?}");
    let duration = probe_duration(&bytes).await?;
    eprintln!("{} ts messages stored without gap, {duration} s of video, longest wait {queued} ms", ts.len());
    ensure!(duration > SECONDS - 1.0, "only {duration} s of the {SECONDS} s published were stored");
    ingest.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_elsewhere_refuses_at_the_handshake() -> Result<()> {
    let ingest = Ingest::start(None).await?;
    let nats = ingest.nats();
    let kv = nats.jetstream().get_key_value(ladder_bus::kv::PUBLISHERS).await?;
    // An ingest on another host holds the name and keeps renewing it.
    let value = r#"{"host":"edge-9","pid":7,"listen":"0.0.0.0:9000","session":"s","remote":"10.0.0.1:1"}"#;
    let mut revision = kv.create("taken", value.into()).await?;
    let renew = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            revision = kv.update("taken", value.into(), revision).await?;
        }
        #[allow(unreachable_code)]
        Ok::<_, async_nats::Error>(())
    };
    let mut watch = nats.watch_all().await?;
    tokio::select! {
        refused = publish_refused(ingest.port, Some("taken"), "") => { refused?; }
        renewed = renew => renewed.map_err(|e| anyhow::anyhow!(e))?,
    }
    let published = watch.drain(Duration::from_millis(300)).await;
    ensure!(published.is_empty(), "a refused publisher produced messages on {:?}", subjects(published));
    ingest.stop().await
}
