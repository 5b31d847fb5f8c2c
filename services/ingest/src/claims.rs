//! Cluster-wide publisher claims: at most one live publisher per stream name across every ingest instance.
//!
//! A claim is the key `<stream>` in the JetStream key-value bucket [`kv::PUBLISHERS`], whose value names the
//! holder (host, pid, listen address, session, remote address) as JSON. It is taken with `create`, so only
//! one instance can hold it; its holder renews it (compare-and-swap on the revision) every
//! [`kv::LEASE_RENEW`], and the bucket's `max_age` ([`kv::LEASE_TTL`]) expires it when the holder died. It is
//! deleted (expecting the holder's revision) when the session ends.
//!
//! The holder counts the claim as held until [`kv::LEASE_TTL`] after the last renewal it *sent* that
//! succeeded: the server cannot expire the key before that. Past it (NATS unreachable for that long) the
//! session stops publishing and the claim is taken again once NATS answers, unless another publisher started
//! a session on the name meanwhile: then, as when a renewal finds the key held by someone else, the claim is
//! lost for good and the session must end without publishing anything more, so that two publishers never
//! interleave one stream.
//!
//! Nothing here knows about SRT: [`Claims`] is given a name and a [`Holder`] once the publisher's handshake
//! has been authorised.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    kv::{self as nats_kv, CreateErrorKind, Operation, UpdateErrorKind},
    stream::LastRawMessageErrorKind,
};
use bytes::Bytes;
use futures::StreamExt;
use ladder_bus::{kv, topology, Bus, BusError};
use ladder_proto::{subject, Event};
use tokio::{
    sync::{oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// How long one key-value request may take before NATS counts as unreachable for it.
pub const KV_TIMEOUT: Duration = Duration::from_secs(1);
/// Taken off [`kv::LEASE_TTL`] when deciding how long a renewal keeps the claim held, for the time between
/// the holder deciding to publish and the server storing the message.
const VALIDITY_MARGIN: Duration = Duration::from_millis(250);
/// How long [`Claim::release`] waits for the renewal task to delete the key.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("stream {stream} already has a live publisher: {holder}")]
    Taken { stream: String, holder: String },
    #[error("cannot claim stream {stream} in nats: {message}")]
    Unavailable { stream: String, message: String },
}

/// Why a claim was lost for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("publisher claim lost: {0}")]
pub struct Lost(String);

/// Who holds a claim. Written into the key, so that an operator, and the log line of a refused publisher, can
/// tell which ingest has the live publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The ingest's SRT listen address.
    pub listen: String,
    pub session: String,
    /// The publisher's address.
    pub remote: String,
}

impl Holder {
    fn to_json(&self) -> Bytes {
        let value = serde_json::json!({
            "host": self.host,
            "pid": self.pid,
            "listen": self.listen,
            "session": self.session,
            "remote": self.remote,
        });
        Bytes::from(value.to_string())
    }
}

/// This machine's host name, for [`Holder::host`].
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A stored claim value, readable in a log line.
fn describe(value: &[u8]) -> String {
    let Ok(serde_json::Value::Object(holder)) = serde_json::from_slice::<serde_json::Value>(value) else {
        return String::from_utf8_lossy(value).into_owned();
    };
    let field = |key: &str| match holder.get(key) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => "?".to_string(),
    };
    format!(
        "session {} from {} on ingest {} (pid {}, listening on {})",
        field("session"),
        field("remote"),
        field("host"),
        field("pid"),
        field("listen")
    )
}

// === impl Claims ===

/// The publisher claims bucket of one ingest instance.
#[derive(Clone)]
pub struct Claims {
    kv: nats_kv::Store,
    events: jetstream::stream::Stream,
}

impl Claims {
    pub async fn open(bus: &Bus) -> Result<Claims, BusError> {
        let kv = kv::bucket(bus.jetstream(), kv::PUBLISHERS, bus.replicas()).await?;
        let events = bus.jetstream().get_stream(topology::EVENTS_STREAM).await.map_err(|e| BusError::Topology {
            what: format!("stream {}", topology::EVENTS_STREAM),
            message: e.to_string(),
        })?;
        Ok(Claims { kv, events })
    }

    /// Who holds `stream` now, if anyone. Only reads: a publisher whose handshake is not authorised yet can
    /// be refused early without claiming anything.
    pub async fn holder(&self, stream: &str) -> Result<Option<String>, ClaimError> {
        let unavailable = |message: String| ClaimError::Unavailable { stream: stream.to_string(), message };
        match tokio::time::timeout(KV_TIMEOUT, self.kv.entry(stream)).await {
            Ok(Ok(Some(entry))) if entry.operation == Operation::Put => Ok(Some(describe(&entry.value))),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable("timed out".into())),
        }
    }

    /// Claims `stream` for `holder` and keeps renewing the claim until the returned [`Claim`] is released or
    /// dropped.
    pub async fn claim(&self, stream: &str, holder: &Holder) -> Result<Claim, ClaimError> {
        let unavailable = |message: String| ClaimError::Unavailable { stream: stream.to_string(), message };
        let value = holder.to_json();
        let sent = Instant::now();
        let revision = match tokio::time::timeout(KV_TIMEOUT, self.kv.create(stream, value.clone())).await {
            Ok(Ok(revision)) => revision,
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {
                let holder = self.holder(stream).await.ok().flatten().unwrap_or_else(|| "another ingest".into());
                return Err(ClaimError::Taken { stream: stream.to_string(), holder });
            }
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Err(_) => return Err(unavailable("timed out".into())),
        };
        let mut holding = Holding {
            kv: self.kv.clone(),
            events: self.events.clone(),
            stream: stream.to_string(),
            value,
            session: holder.session.clone(),
            revision,
            baseline: None,
            valid_until: sent + validity(),
            state: watch::channel(State::Held { until: sent + validity() }).0,
            unreachable: false,
            checked: true,
        };
        // The newest `stream.started` before this session: if the claim ever has to be taken again, a newer
        // one from another session means another publisher came and went in between.
        match holding.last_started().await {
            Ok(last) => holding.baseline = last.map(|(sequence, _)| sequence),
            Err(message) => {
                holding.delete().await;
                return Err(unavailable(message));
            }
        }
        let watch = ClaimWatch(holding.state.subscribe());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(holding.hold(stopped));
        Ok(Claim { watch, stop: Some(stop), task: Some(task) })
    }
}

impl Claims {
    /// Follows the bucket into memory: which names some ingest holds now, as far as the claims renewed in the
    /// last [`kv::LEASE_TTL`] tell. For the SRT handshake callback, which must not wait on NATS: a name
    /// live on another instance is refused there with a reject code. The claim taken after the handshake
    /// still decides; this view only lets most conflicts be refused early and clearly. The watch is
    /// re-created when it ends (a NATS restart); while it is down, names age out of the view.
    pub fn follow(&self, shutdown: CancellationToken) -> HeldNames {
        let held = HeldNames::default();
        let kv = self.kv.clone();
        let view = held.clone();
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            while !shutdown.is_cancelled() {
                let watch = tokio::select! {
                    watch = kv.watch_all() => watch,
                    _ = shutdown.cancelled() => return,
                };
                match watch {
                    Ok(mut watch) => {
                        failures = 0;
                        loop {
                            let entry = tokio::select! {
                                entry = watch.next() => entry,
                                _ = shutdown.cancelled() => return,
                            };
                            match entry {
                                Some(Ok(entry)) => view.update(&entry.key, entry.operation == Operation::Put),
                                Some(Err(e)) => {
                                    tracing::debug!(error = %e, "publisher claims watch failed, watching again");
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %e, "cannot watch the publisher claims, retrying");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        held
    }
}

/// Stream names with a live publisher on some ingest, with when their claim was last written.
#[derive(Clone, Default)]
pub struct HeldNames(Arc<RwLock<HashMap<String, std::time::Instant>>>);

impl HeldNames {
    /// Whether `stream`'s claim was written (taken or renewed) within the last [`kv::LEASE_TTL`]. Only reads
    /// memory.
    pub fn is_held(&self, stream: &str) -> bool {
        let names = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        names.get(stream).is_some_and(|seen| seen.elapsed() < kv::LEASE_TTL)
    }

    fn update(&self, stream: &str, held: bool) {
        let mut names = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if held {
            names.insert(stream.to_string(), std::time::Instant::now());
        } else {
            names.remove(stream);
        }
        // Expired claims leave no delete marker: forget names whose claim stopped being renewed.
        if names.len() > 64 {
            names.retain(|_, seen| seen.elapsed() < kv::LEASE_TTL);
        }
    }
}

fn validity() -> Duration {
    kv::LEASE_TTL.saturating_sub(VALIDITY_MARGIN)
}

// === impl Claim ===

/// A claimed stream name. Renewed by a task of its own; released when [`Claim::release`]d or dropped
/// (however the session ends). If the process dies, the key expires after [`kv::LEASE_TTL`].
pub struct Claim {
    watch: ClaimWatch,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Claim {
    /// Follows the state of the claim.
    pub fn watch(&self) -> ClaimWatch {
        self.watch.clone()
    }

    /// Stops renewing and deletes the key, if it is still this holder's; waits (bounded) until it is done so
    /// that the name is free when this returns.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(RELEASE_TIMEOUT, task).await.is_err() {
                tracing::warn!("releasing the publisher claim timed out, it expires on its own");
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Dropping `stop` tells the renewal task to release the claim.
        self.stop.take();
    }
}

/// Whether a claim is held, for the tasks that publish under it.
#[derive(Clone)]
pub struct ClaimWatch(watch::Receiver<State>);

impl ClaimWatch {
    /// Returns at once while the claim is certainly held; waits while it may have expired (NATS unreachable);
    /// fails once it is lost for good.
    pub async fn held(&mut self) -> Result<(), Lost> {
        loop {
            match &*self.0.borrow_and_update() {
                State::Held { until } if Instant::now() < *until => return Ok(()),
                State::Lost(lost) => return Err(lost.clone()),
                State::Held { .. } | State::Expired => {}
            }
            if self.0.changed().await.is_err() {
                return Err(Lost("the renewal task ended".into()));
            }
        }
    }

    /// Resolves when the claim is lost for good.
    pub async fn lost(&mut self) -> Lost {
        loop {
            if let State::Lost(lost) = &*self.0.borrow_and_update() {
                return lost.clone();
            }
            if self.0.changed().await.is_err() {
                return Lost("the renewal task ended".into());
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum State {
    /// Renewed: no one else can claim the name before `until`.
    Held {
        until: Instant,
    },
    /// Not renewed for [`kv::LEASE_TTL`]: the key may have expired on the server. Taken again once NATS
    /// answers, if no one else took it.
    Expired,
    Lost(Lost),
}

// === impl Holding ===

/// The renewal task's side of a claim.
struct Holding {
    kv: nats_kv::Store,
    events: jetstream::stream::Stream,
    stream: String,
    value: Bytes,
    session: String,
    revision: u64,
    /// Sequence of the newest `stream.started.<stream>` when the claim was taken.
    baseline: Option<u64>,
    valid_until: Instant,
    state: watch::Sender<State>,
    /// The last renewal failed for want of an answer.
    unreachable: bool,
    /// False from the moment the key was found gone until it is known that no other session started since.
    checked: bool,
}

enum Renewal {
    Renewed(u64),
    /// The key holds this claim under a newer revision than known: a renewal stored whose answer was lost.
    Adopted(u64),
    Unreachable(String),
    Lost(String),
}

impl Holding {
    async fn hold(mut self, mut stop: oneshot::Receiver<()>) {
        let stream = self.stream.clone();
        let mut ticks = tokio::time::interval_at(Instant::now() + kv::LEASE_RENEW, kv::LEASE_RENEW);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticks.tick() => {}
            }
            let sent = Instant::now();
            match self.renew().await {
                Renewal::Renewed(revision) => {
                    if self.unreachable {
                        tracing::info!(%stream, session = %self.session, "publisher claim renewed again");
                        self.unreachable = false;
                    }
                    self.revision = revision;
                    self.valid_until = sent + validity();
                    self.state.send_replace(State::Held { until: self.valid_until });
                }
                Renewal::Adopted(revision) => self.revision = revision,
                Renewal::Unreachable(error) => {
                    let expired = Instant::now() >= self.valid_until;
                    if !self.unreachable {
                        tracing::warn!(%stream, session = %self.session, %error, "cannot renew the publisher claim");
                        self.unreachable = true;
                    }
                    if expired && !matches!(*self.state.borrow(), State::Expired) {
                        tracing::warn!(
                            %stream, session = %self.session,
                            "publisher claim not renewed for its whole lifetime, publishing paused until nats answers"
                        );
                        self.state.send_replace(State::Expired);
                    }
                }
                Renewal::Lost(reason) => {
                    tracing::error!(%stream, session = %self.session, %reason, "publisher claim lost, ending the session");
                    self.state.send_replace(State::Lost(Lost(reason)));
                    return;
                }
            }
        }
        self.delete().await;
    }

    async fn renew(&mut self) -> Renewal {
        let renewal = self.renew_key().await;
        let (Renewal::Renewed(revision) | Renewal::Adopted(revision)) = renewal else {
            return renewal;
        };
        if self.checked {
            return renewal;
        }
        // The key was taken again after it had expired or been deleted: that is only this session's claim if
        // no other session started on the stream in between.
        self.revision = revision;
        let last = match self.last_started().await {
            Ok(last) => last,
            Err(message) => return Renewal::Unreachable(message),
        };
        let other = match last {
            Some((_, session)) if session == self.session => None,
            Some((sequence, _)) if Some(sequence) == self.baseline => None,
            None if self.baseline.is_none() => None,
            Some((_, session)) => Some(format!("expired, and session {session} started on the stream meanwhile")),
            None => Some("expired, and the stream's start events are gone".to_string()),
        };
        if let Some(reason) = other {
            self.delete().await;
            return Renewal::Lost(reason);
        }
        self.checked = true;
        tracing::warn!(stream = %self.stream, session = %self.session, "publisher claim had expired, claimed again");
        renewal
    }

    async fn renew_key(&mut self) -> Renewal {
        match tokio::time::timeout(KV_TIMEOUT, self.kv.update(&self.stream, self.value.clone(), self.revision)).await {
            Ok(Ok(revision)) => return Renewal::Renewed(revision),
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {}
            Ok(Err(e)) => return Renewal::Unreachable(e.to_string()),
            Err(_) => return Renewal::Unreachable("timed out".into()),
        }
        // The key changed since the last renewal: a renewal of ours was stored but its answer lost, the key
        // expired or was deleted, or someone else holds it.
        let entry = match tokio::time::timeout(KV_TIMEOUT, self.kv.entry(&self.stream)).await {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => return Renewal::Unreachable(e.to_string()),
            Err(_) => return Renewal::Unreachable("timed out".into()),
        };
        match entry {
            Some(entry) if entry.operation == Operation::Put && entry.value == self.value => {
                Renewal::Adopted(entry.revision)
            }
            Some(entry) if entry.operation == Operation::Put => {
                Renewal::Lost(format!("held by {}", describe(&entry.value)))
            }
            _ => {
                // Gone, so not held: publishing waits until the key is taken again and the check in `renew`
                // has passed.
                self.checked = false;
                self.valid_until = Instant::now();
                self.state.send_replace(State::Expired);
                match tokio::time::timeout(KV_TIMEOUT, self.kv.create(&self.stream, self.value.clone())).await {
                    Ok(Ok(revision)) => Renewal::Renewed(revision),
                    // Someone created it a moment ago: the next renewal finds out who.
                    Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {
                        Renewal::Unreachable("claimed concurrently".into())
                    }
                    Ok(Err(e)) => Renewal::Unreachable(e.to_string()),
                    Err(_) => Renewal::Unreachable("timed out".into()),
                }
            }
        }
    }

    /// Sequence and session of the newest `stream.started.<stream>` event.
    async fn last_started(&self) -> Result<Option<(u64, String)>, String> {
        let subject = format!("{}.{}", subject::STREAM_STARTED, self.stream);
        let message =
            match tokio::time::timeout(KV_TIMEOUT, self.events.get_last_raw_message_by_subject(&subject)).await {
                Ok(Ok(message)) => message,
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Ok(Err(e)) => return Err(format!("cannot read {subject}: {e}")),
                Err(_) => return Err(format!("reading {subject} timed out")),
            };
        match Event::decode(&subject, &message.payload) {
            Ok(Event::StreamStarted(started)) => Ok(Some((message.sequence, started.session_id))),
            Ok(_) => Err(format!("{subject} holds another kind of event")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Deletes the key if it still holds this claim's revision.
    async fn delete(&self) {
        let stream = &self.stream;
        match tokio::time::timeout(KV_TIMEOUT, self.kv.delete_expect_revision(stream, Some(self.revision))).await {
            Ok(Ok(())) => tracing::debug!(%stream, session = %self.session, "publisher claim released"),
            Ok(Err(e)) => {
                tracing::warn!(%stream, session = %self.session, error = %e, "cannot release the publisher claim")
            }
            Err(_) => tracing::warn!(
                %stream, session = %self.session,
                "releasing the publisher claim timed out, it expires on its own"
            ),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.to_json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            host: "edge-1".into(),
            pid: 42,
            listen: "0.0.0.0:9000".into(),
            session: "0000000000005-abcdef01".into(),
            remote: "10.0.0.7:5000".into(),
        }
    }

    #[test]
    fn a_claim_names_its_holder_in_json() {
        let value: serde_json::Value = serde_json::from_slice(&holder().to_json()).expect("json");
        assert_eq!(value["host"], "edge-1");
        assert_eq!(value["pid"], 42);
        assert_eq!(value["listen"], "0.0.0.0:9000");
        assert_eq!(value["session"], "0000000000005-abcdef01");
        assert_eq!(value["remote"], "10.0.0.7:5000");
        assert_eq!(
            holder().to_string(),
            "session 0000000000005-abcdef01 from 10.0.0.7:5000 on ingest edge-1 (pid 42, listening on 0.0.0.0:9000)"
        );
        assert_eq!(describe(b"not json"), "not json");
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_held_only_until_its_renewal_runs_out() {
        let (state, rx) = watch::channel(State::Held { until: Instant::now() + Duration::from_secs(1) });
        let mut watch = ClaimWatch(rx);
        assert_eq!(watch.held().await, Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut waiting = ClaimWatch(state.subscribe());
        let waiter = tokio::spawn(async move { waiting.held().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "an expired claim makes publishers wait");
        state.send_replace(State::Held { until: Instant::now() + Duration::from_secs(1) });
        assert_eq!(waiter.await.expect("task"), Ok(()));
        state.send_replace(State::Lost(Lost("held by someone".into())));
        assert_eq!(watch.held().await, Err(Lost("held by someone".into())));
        assert_eq!(watch.lost().await, Lost("held by someone".into()));
        drop(state);
        assert!(ClaimWatch(watch.0.clone()).held().await.is_err());
    }
}
