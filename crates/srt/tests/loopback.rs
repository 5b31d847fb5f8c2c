//! libsrt end to end on loopback: a [`Listener`] whose admission decides per streamid, and [`Caller`]s as
//! publishers. Real libsrt on both sides; no other process.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use ladder_srt::{Caller, CallerConfig, Decision, Incoming, Listener, ListenerConfig, RejectReason, SrtError};

const KEY: &str = "correct horse battery";

/// Streams named `keyed-*` need [`KEY`], `busy` is refused as live already, everything else is open.
fn listener() -> Result<Listener> {
    let config = ListenerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    Ok(Listener::bind(&config, |request: &ladder_srt::Request<'_>| match request.stream_id {
        Some("busy") => Decision::Reject(RejectReason::CONFLICT),
        Some(name) if name.starts_with("keyed-") => Decision::Accept { passphrase: Some(KEY.to_string()) },
        Some(_) => Decision::Accept { passphrase: None },
        None => Decision::Reject(RejectReason::BAD_REQUEST),
    })?)
}

async fn connect(config: CallerConfig) -> Result<Result<Caller, SrtError>> {
    Ok(tokio::task::spawn_blocking(move || Caller::connect(&config)).await?)
}

async fn next(listener: &mut Listener) -> Result<Incoming> {
    tokio::time::timeout(Duration::from_secs(5), listener.next()).await?.context("listener ended")
}

#[tokio::test]
async fn payloads_arrive_in_order_with_statistics() -> Result<()> {
    let mut listener = listener()?;
    let caller = connect(CallerConfig::new(listener.local_addr(), "cam-1")).await??;
    let Incoming::Connection(mut connection) = next(&mut listener).await? else { bail!("expected a connection") };
    ensure!(connection.stream_id() == "cam-1");
    ensure!(connection.key_length() == 0, "not encrypted");
    let payload: Vec<u8> = (0..1316 * 200).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let sender = tokio::task::spawn_blocking(move || -> Result<Caller> {
        caller.send(&sent)?;
        Ok(caller)
    });
    let mut received = Vec::new();
    while received.len() < payload.len() {
        let batch = tokio::time::timeout(Duration::from_secs(5), connection.recv()).await?.context("ended early")?;
        received.extend_from_slice(&batch);
    }
    ensure!(received == payload, "payload differs");
    let stats = connection.stats()?;
    ensure!(stats.packets_received >= 200, "{stats:?}");
    ensure!(stats.bytes_received >= payload.len() as u64, "{stats:?}");
    ensure!(stats.latency_ms >= 120, "{stats:?}");
    // The caller hangs up: the connection ends.
    drop(sender.await??);
    let end = tokio::time::timeout(Duration::from_secs(5), connection.recv()).await?;
    ensure!(end.is_none(), "expected the end of the connection");
    Ok(())
}

#[tokio::test]
async fn a_refusal_from_the_callback_reaches_the_caller() -> Result<()> {
    let listener = listener()?;
    let refused = connect(CallerConfig::new(listener.local_addr(), "busy")).await?;
    match refused {
        Err(SrtError::Rejected(reason)) => ensure!(reason == RejectReason::CONFLICT, "{reason}"),
        other => bail!("expected a rejection, got {other:?}"),
    }
    let mut no_id = CallerConfig::new(listener.local_addr(), "x");
    no_id.stream_id = None;
    match connect(no_id).await? {
        Err(SrtError::Rejected(reason)) => ensure!(reason == RejectReason::BAD_REQUEST, "{reason}"),
        other => bail!("expected a rejection, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn passphrases_are_checked_per_stream() -> Result<()> {
    let mut listener = listener()?;
    let addr = listener.local_addr();
    for key_length in [None, Some(16), Some(24), Some(32)] {
        let mut config = CallerConfig::new(addr, "keyed-a");
        config.passphrase = Some(KEY.into());
        config.key_length = key_length;
        let _caller = connect(config).await?.with_context(|| format!("pbkeylen {key_length:?}"))?;
        let Incoming::Connection(connection) = next(&mut listener).await? else { bail!("expected a connection") };
        ensure!(connection.key_length() == key_length.unwrap_or(16), "{}", connection.key_length());
    }

    let cases = [
        ("keyed-a", Some("wrong passphrase!"), RejectReason::BAD_SECRET),
        ("keyed-a", None, RejectReason::UNSECURE),
        ("open", Some(KEY), RejectReason::UNSECURE),
    ];
    for (stream, passphrase, expected) in cases {
        let mut config = CallerConfig::new(addr, stream);
        config.passphrase = passphrase.map(str::to_string);
        match connect(config).await? {
            Err(SrtError::Rejected(reason)) => ensure!(reason == expected, "{stream} {passphrase:?}: {reason}"),
            other => bail!("{stream} {passphrase:?}: expected a rejection, got {other:?}"),
        }
        // The listener learns why too.
        let Incoming::Failed(failed) = next(&mut listener).await? else { bail!("expected a failed handshake") };
        ensure!(failed.stream_id.as_deref() == Some(stream));
        ensure!(failed.reason == Some(expected), "{stream}: listener saw {:?}", failed.reason);
    }
    Ok(())
}

#[tokio::test]
async fn a_caller_that_hangs_up_at_once_ends_its_connection() -> Result<()> {
    let mut listener = listener()?;
    let caller = connect(CallerConfig::new(listener.local_addr(), "brief")).await??;
    drop(caller);
    let Incoming::Connection(mut connection) = next(&mut listener).await? else { bail!("expected a connection") };
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(8), connection.recv()).await?;
    ensure!(end.is_none(), "expected the end of the connection");
    eprintln!("ended {:?} after the hang-up", started.elapsed());
    ensure!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    Ok(())
}

/// libsrt holds a live packet back until its play time, even after the peer has hung up: with a latency of
/// 1.5 s, everything sent in the last 1.5 s is still in the receive buffer when the caller closes. All of it
/// must still come out.
#[tokio::test]
async fn what_was_sent_before_a_hang_up_arrives_whatever_the_latency() -> Result<()> {
    let mut listener = listener()?;
    let mut config = CallerConfig::new(listener.local_addr(), "slow");
    config.latency = Duration::from_millis(1500);
    let caller = connect(config).await??;
    let Incoming::Connection(mut connection) = next(&mut listener).await? else { bail!("expected a connection") };
    let payload: Vec<u8> = (0..1316 * 300).map(|i| (i % 253) as u8).collect();
    let sent = payload.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        caller.send(&sent)?;
        // Hang up at once: the last packets are still on their way to their play time.
        std::thread::sleep(Duration::from_millis(300));
        drop(caller);
        Ok(())
    })
    .await??;
    let mut received = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(6), connection.recv()).await? {
        received.extend_from_slice(&batch);
    }
    ensure!(received.len() == payload.len(), "received {} of {} bytes", received.len(), payload.len());
    ensure!(received == payload, "payload differs");
    Ok(())
}
