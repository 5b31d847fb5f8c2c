//! The decision at the SRT handshake. [`Gate::admit`] runs inside libsrt's listen callback, on the thread
//! that receives every packet of the port: it reads memory only (the [`KeyView`] of stream keys, the
//! [`HeldNames`] of other instances, this instance's [`LiveNames`]) and never waits on the network.
//!
//! A name is reserved for the handshake's socket in the callback, so that two handshakes racing for one
//! name here cannot both succeed; the reservation becomes the session's [`LiveName`] when libsrt hands over
//! the connection, and is released when libsrt reports the handshake failed (or after
//! [`RESERVATION_TIMEOUT`] if that report was lost).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ladder_bus::keys::{validate_key, KeyView};
use ladder_srt::{Decision, FailedHandshake, RejectReason, Request};

use crate::{claims::HeldNames, parse_stream_id, StreamIdError};

/// How long a name stays reserved for a handshake that neither completed nor was reported failed.
const RESERVATION_TIMEOUT: Duration = Duration::from_secs(15);
/// Refusals logged per second at most; the others are counted and summed up in the next line.
const REFUSALS_LOGGED_PER_SECOND: u32 = 20;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a publisher is refused, with the reject code it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: RejectReason,
    pub reason: String,
}

impl Refusal {
    fn new(code: RejectReason, reason: impl Into<String>) -> Refusal {
        Refusal { code, reason: reason.into() }
    }
}

/// [`Gate`] as libsrt's admission.
pub(crate) struct Admission(pub Arc<Gate>);

impl ladder_srt::Admission for Admission {
    fn admit(&self, request: &Request<'_>) -> Decision {
        self.0.admit(request)
    }
}

pub(crate) struct Gate {
    keys: KeyView,
    held: HeldNames,
    server_key: Option<Arc<str>>,
    open_publish: bool,
    max_publishers: usize,
    live: LiveNames,
    refusals: Refusals,
}

impl Gate {
    pub fn new(
        keys: KeyView,
        held: HeldNames,
        server_key: Option<String>,
        open_publish: bool,
        max_publishers: usize,
    ) -> Gate {
        Gate {
            keys,
            held,
            server_key: server_key.map(Arc::from),
            open_publish,
            max_publishers,
            live: LiveNames::default(),
            refusals: Refusals::default(),
        }
    }

    /// The callback's decision.
    pub fn admit(&self, request: &Request<'_>) -> Decision {
        match self.decide(request.stream_id, request.socket) {
            Ok(passphrase) => Decision::Accept { passphrase },
            Err(refusal) => {
                self.refusals.record(&refusal, request.peer, request.stream_id);
                Decision::Reject(refusal.code)
            }
        }
    }

    /// The passphrase the publisher must use (`None`: it must not encrypt), or why it is refused. Reserves
    /// the name for `socket`.
    fn decide(&self, stream_id: Option<&str>, socket: i32) -> Result<Option<String>, Refusal> {
        let stream = parse_stream_id(stream_id).map_err(|e| {
            let code = match e {
                StreamIdError::NotPublish(_) => RejectReason::BAD_MODE,
                _ => RejectReason::BAD_REQUEST,
            };
            Refusal::new(code, e.to_string())
        })?;
        let key = self.key(&stream);
        if let Some(key) = &key {
            if validate_key(key).is_err() {
                return Err(Refusal::new(
                    RejectReason::INTERNAL,
                    format!("the key stored for stream {stream} is not a valid SRT passphrase; set it again"),
                ));
            }
        } else if !self.open_publish {
            return Err(Refusal::new(
                RejectReason::FORBIDDEN,
                format!("stream {stream} has no key and open publishing is off (ladder stream set-key {stream})"),
            ));
        }
        if self.held.is_held(&stream) && !self.live.is_reserved(&stream) {
            return Err(Refusal::new(
                RejectReason::CONFLICT,
                format!("stream {stream} already has a live publisher on another ingest"),
            ));
        }
        match self.live.reserve(&stream, socket, self.max_publishers) {
            Ok(()) => Ok(key.map(|key| key.to_string())),
            Err(Reserve::Taken) => {
                Err(Refusal::new(RejectReason::CONFLICT, format!("stream {stream} already has a live publisher")))
            }
            Err(Reserve::Full) => Err(Refusal::new(
                RejectReason::OVERLOAD,
                format!("ingest is full: {} publishers (--max-publishers)", self.max_publishers),
            )),
        }
    }

    /// The stream's own key, else the server's.
    fn key(&self, stream: &str) -> Option<Arc<str>> {
        self.keys.get(stream).or_else(|| self.server_key.clone())
    }

    /// libsrt completed the handshake of `socket`: its reservation becomes the session's live name.
    pub fn accepted(&self, socket: i32, stream_id: &str) -> Option<LiveName> {
        let stream = parse_stream_id(Some(stream_id)).ok()?;
        self.live.confirm(&stream, socket)
    }

    /// libsrt refused a handshake the callback had let through, or it did not complete: the reservation is
    /// released and the refusal logged and counted.
    pub fn failed(&self, failed: &FailedHandshake) {
        let stream = parse_stream_id(failed.stream_id.as_deref()).ok();
        if let Some(stream) = &stream {
            self.live.release_reservation(stream, failed.socket);
        }
        let name = stream.as_deref().unwrap_or("?");
        let keyed = stream.as_deref().is_some_and(|stream| self.key(stream).is_some());
        let refusal = match failed.reason {
            Some(code) if code == RejectReason::BAD_SECRET => {
                Refusal::new(code, format!("wrong passphrase for stream {name}"))
            }
            Some(code) if code == RejectReason::UNSECURE && keyed => {
                Refusal::new(code, format!("missing passphrase: stream {name} needs its key"))
            }
            Some(code) if code == RejectReason::UNSECURE => Refusal::new(
                code,
                format!("the publisher encrypts but stream {name} has no key; connect without a passphrase"),
            ),
            Some(code) if code == RejectReason::CONGESTION || code == RejectReason::MESSAGE_API => {
                Refusal::new(code, "not a live-mode caller (transtype=file?): ingest takes transtype=live")
            }
            Some(code) => Refusal::new(code, format!("handshake refused by libsrt: {code}")),
            None => Refusal::new(RejectReason::TIMEOUT, "the caller went away during the handshake"),
        };
        self.refusals.record(&refusal, failed.peer, failed.stream_id.as_deref());
    }
}

// === impl LiveNames ===

/// Stream names reserved for a handshake or with a connected publisher on this instance, so two
/// publishers never interleave one stream.
#[derive(Default, Clone)]
pub(crate) struct LiveNames(Arc<Mutex<HashMap<String, Slot>>>);

struct Slot {
    socket: i32,
    live: bool,
    since: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Reserve {
    Taken,
    Full,
}

impl LiveNames {
    fn reserve(&self, name: &str, socket: i32, max: usize) -> Result<(), Reserve> {
        let mut names = lock(&self.0);
        let stale = |slot: &Slot| !slot.live && slot.since.elapsed() > RESERVATION_TIMEOUT;
        if names.get(name).is_some_and(|slot| !stale(slot)) {
            return Err(Reserve::Taken);
        }
        if names.len() >= max {
            names.retain(|_, slot| !stale(slot));
            if names.len() >= max {
                return Err(Reserve::Full);
            }
        }
        names.insert(name.to_string(), Slot { socket, live: false, since: Instant::now() });
        Ok(())
    }

    fn is_reserved(&self, name: &str) -> bool {
        lock(&self.0).contains_key(name)
    }

    fn confirm(&self, name: &str, socket: i32) -> Option<LiveName> {
        let mut names = lock(&self.0);
        let slot = names.get_mut(name).filter(|slot| slot.socket == socket && !slot.live)?;
        slot.live = true;
        Some(LiveName { names: self.clone(), name: name.to_string(), socket })
    }

    fn release_reservation(&self, name: &str, socket: i32) {
        let mut names = lock(&self.0);
        if names.get(name).is_some_and(|slot| slot.socket == socket && !slot.live) {
            names.remove(name);
        }
    }
}

/// A stream name with a live publisher here, released when dropped (when the session ends, however it
/// ends).
pub(crate) struct LiveName {
    names: LiveNames,
    name: String,
    socket: i32,
}

impl LiveName {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LiveName {
    fn drop(&mut self) {
        let mut names = lock(&self.names.0);
        if names.get(&self.name).is_some_and(|slot| slot.socket == self.socket) {
            names.remove(&self.name);
        }
    }
}

// === impl Refusals ===

/// Counts refusals by reject code and logs them, at most [`REFUSALS_LOGGED_PER_SECOND`] lines a second so
/// that a flood of bad handshakes cannot flood the log (or slow libsrt's thread writing it).
#[derive(Default)]
struct Refusals(Mutex<RefusalState>);

#[derive(Default)]
struct RefusalState {
    by_code: BTreeMap<i32, u64>,
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Refusals {
    fn record(&self, refusal: &Refusal, peer: Option<SocketAddr>, stream_id: Option<&str>) {
        crate::metrics::refused(&refusal.code.name());
        let (total, suppressed) = {
            let mut state = lock(&self.0);
            let total = {
                let count = state.by_code.entry(refusal.code.code()).or_default();
                *count += 1;
                *count
            };
            let now = Instant::now();
            if state.window.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1)) {
                state.window = Some(now);
                state.logged = 0;
            }
            if state.logged >= REFUSALS_LOGGED_PER_SECOND {
                state.suppressed += 1;
                return;
            }
            state.logged += 1;
            (total, std::mem::take(&mut state.suppressed))
        };
        let remote = peer.map(|peer| peer.to_string()).unwrap_or_default();
        tracing::warn!(
            %remote,
            streamid = stream_id.unwrap_or(""),
            code = refusal.code.code(),
            reject = %refusal.code.name(),
            reason = %refusal.reason,
            refused_total = total,
            not_logged = suppressed,
            "publisher refused"
        );
    }

    #[cfg(test)]
    fn count(&self, code: RejectReason) -> u64 {
        lock(&self.0).by_code.get(&code.code()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(keys: &[(&str, &str)], server_key: Option<&str>, open: bool, max: usize) -> Gate {
        let view: KeyView = keys.iter().map(|(stream, key)| (stream.to_string(), key.to_string())).collect();
        Gate::new(view, HeldNames::default(), server_key.map(str::to_string), open, max)
    }

    fn refusal(result: Result<Option<String>, Refusal>) -> RejectReason {
        result.expect_err("refused").code
    }

    #[test]
    fn a_stream_key_becomes_the_passphrase() {
        let gate = gate(&[("cam-1", "key-of-cam-1")], None, false, 10);
        assert_eq!(gate.decide(Some("cam-1"), 1), Ok(Some("key-of-cam-1".to_string())));
        assert_eq!(refusal(gate.decide(Some("cam-2"), 2)), RejectReason::FORBIDDEN, "no key, not open");
        let open = self::gate(&[("cam-1", "key-of-cam-1")], None, true, 10);
        assert_eq!(open.decide(Some("cam-2"), 2), Ok(None), "open publishing: unencrypted");
        let server = self::gate(&[("cam-1", "key-of-cam-1")], Some("server-wide-key"), false, 10);
        assert_eq!(server.decide(Some("#!::r=cam-2,m=publish"), 2), Ok(Some("server-wide-key".into())));
        assert_eq!(server.decide(Some("cam-1"), 3), Ok(Some("key-of-cam-1".into())), "own key first");
    }

    #[test]
    fn bad_streamids_get_their_reject_codes() {
        let gate = gate(&[], None, true, 10);
        assert_eq!(refusal(gate.decide(None, 1)), RejectReason::BAD_REQUEST);
        assert_eq!(refusal(gate.decide(Some("a.b"), 1)), RejectReason::BAD_REQUEST);
        assert_eq!(refusal(gate.decide(Some("#!::r=cam,m=request"), 1)), RejectReason::BAD_MODE);
        let bad_key = self::gate(&[("cam", "short")], None, true, 10);
        assert_eq!(refusal(bad_key.decide(Some("cam"), 1)), RejectReason::INTERNAL, "never let in without a key");
    }

    #[test]
    fn one_handshake_per_name_and_at_most_max_publishers() {
        let gate = gate(&[], None, true, 2);
        assert_eq!(gate.decide(Some("a"), 1), Ok(None));
        assert_eq!(refusal(gate.decide(Some("a"), 2)), RejectReason::CONFLICT, "reserved by socket 1");
        assert_eq!(gate.decide(Some("b"), 3), Ok(None));
        assert_eq!(refusal(gate.decide(Some("c"), 4)), RejectReason::OVERLOAD);

        // Socket 1's handshake fails: the name is free again.
        gate.failed(&FailedHandshake {
            socket: 1,
            peer: None,
            stream_id: Some("a".into()),
            reason: Some(RejectReason::BAD_SECRET),
        });
        assert_eq!(gate.refusals.count(RejectReason::BAD_SECRET), 1);
        assert!(gate.accepted(1, "a").is_none(), "a failed handshake does not become live");
        assert_eq!(gate.decide(Some("a"), 5), Ok(None));
        let live = gate.accepted(5, "a").expect("reserved for socket 5");
        assert!(gate.accepted(5, "a").is_none(), "confirmed once");
        // A failure report about another socket does not free a live name.
        gate.failed(&FailedHandshake { socket: 1, peer: None, stream_id: Some("a".into()), reason: None });
        assert_eq!(refusal(gate.decide(Some("a"), 6)), RejectReason::CONFLICT);
        drop(live);
        assert_eq!(gate.decide(Some("a"), 7), Ok(None), "released when the session ends");
        assert_eq!(gate.refusals.count(RejectReason::CONFLICT), 0, "decide alone does not count");
    }

    #[test]
    fn refusals_are_counted_by_code() {
        let gate = gate(&[], None, false, 10);
        for socket in 0..50 {
            let request = Request { socket, peer: None, stream_id: Some("x"), hs_version: 5 };
            assert_eq!(gate.admit(&request), Decision::Reject(RejectReason::FORBIDDEN));
        }
        assert_eq!(gate.refusals.count(RejectReason::FORBIDDEN), 50, "counted even when not logged");
    }
}
