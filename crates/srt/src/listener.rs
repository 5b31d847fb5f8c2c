//! The listening socket, its admission callback and the connections it accepts.

use std::{
    collections::HashMap,
    ffi::CStr,
    net::SocketAddr,
    os::raw::{c_char, c_int, c_void},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{addr, ffi, reactor, RejectReason, SrtError, Stats};

/// How long a handshake the callback accepted may take to complete before it is reported as failed without
/// a reason (the caller went away between the callback and the end of the handshake).
pub(crate) const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// A pending handshake's socket is looked at once it is this old: by then libsrt has either queued it for
/// `accept` (and the reactor took it) or it broke.
const PENDING_CHECK_AFTER: Duration = Duration::from_millis(500);
/// Failed handshakes waiting for [`Listener::next`]; more are counted and dropped (a flood must not grow
/// memory).
const FAILED_QUEUE: usize = 1024;

/// Settings of a [`Listener`].
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// Receive latency (TSBPD delay): how long SRT may spend recovering lost packets. The peer may ask for
    /// more; the larger of the two applies.
    pub latency: Duration,
    /// Handshakes libsrt queues before `accept` (`srt_listen` backlog).
    pub backlog: u16,
    /// Accepted connections waiting for [`Listener::next`]; beyond that a connection is closed at once.
    pub accept_queue: usize,
}

impl ListenerConfig {
    pub fn new(addr: SocketAddr) -> ListenerConfig {
        ListenerConfig { addr, latency: Duration::from_millis(120), backlog: 128, accept_queue: 128 }
    }
}

/// A handshake as the admission callback sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The socket libsrt created for this caller; the same id as the [`Connection`] if it is accepted.
    pub socket: i32,
    pub peer: Option<SocketAddr>,
    /// The caller's `SRTO_STREAMID`; `None` if it sent none (or an empty one).
    pub stream_id: Option<&'a str>,
    /// 5 for every current SRT implementation; 4 for a UDT-era caller, which cannot send a streamid.
    pub hs_version: i32,
}

/// What the admission callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the handshake; with a passphrase, the caller must encrypt with it (libsrt then refuses a
    /// wrong one with [`RejectReason::BAD_SECRET`] and a missing one with [`RejectReason::UNSECURE`]);
    /// without, it must not encrypt ([`RejectReason::UNSECURE`]).
    Accept { passphrase: Option<String> },
    /// Refuse: the caller's connect fails with this reason.
    Reject(RejectReason),
}

/// Decides handshakes. Runs on libsrt's receive thread, which serves every connection of the port: it must
/// return quickly and never block (no network, no waiting on locks held across I/O). A panic refuses the
/// handshake with [`RejectReason::INTERNAL`].
pub trait Admission: Send + Sync + 'static {
    fn admit(&self, request: &Request<'_>) -> Decision;
}

impl<F> Admission for F
where
    F: Fn(&Request<'_>) -> Decision + Send + Sync + 'static,
{
    fn admit(&self, request: &Request<'_>) -> Decision {
        self(request)
    }
}

/// A handshake the callback accepted but that did not end in a connection.
#[derive(Debug, Clone)]
pub struct FailedHandshake {
    pub socket: i32,
    pub peer: Option<SocketAddr>,
    pub stream_id: Option<String>,
    /// What libsrt refused it for (a wrong passphrase, an encryption mismatch, an incompatible
    /// `transtype`); `None` if the caller went away before the connection was handed over, or the handshake
    /// did not complete within 10 s.
    pub reason: Option<RejectReason>,
}

/// What a listener produces.
#[derive(Debug)]
pub enum Incoming {
    Connection(Connection),
    Failed(FailedHandshake),
}

// === impl Hook ===

/// The listen callback's state, shared with libsrt through an opaque pointer. Leaked: libsrt gives no
/// guarantee that a callback that started before `srt_close` has returned when `srt_close` does.
pub(crate) struct Hook {
    admission: Box<dyn Admission>,
    /// Handshakes accepted by the callback that have not become a connection yet.
    pending: Mutex<HashMap<i32, Pending>>,
    failed: mpsc::Sender<FailedHandshake>,
    failed_dropped: AtomicU64,
    closed: AtomicBool,
}

struct Pending {
    peer: Option<SocketAddr>,
    stream_id: Option<String>,
    since: Instant,
}

/// Every open listener's hook, so that a rejection read from libsrt's (process-wide) log reaches the
/// listener whose handshake it was.
static HOOKS: Mutex<Vec<&'static Hook>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hook {
    fn decide(&self, socket: i32, hs_version: i32, peer: Option<SocketAddr>, stream_id: Option<&str>) -> c_int {
        if self.closed.load(Ordering::Acquire) {
            return reject(socket, RejectReason::UNAVAILABLE);
        }
        let request = Request { socket, peer, stream_id, hs_version };
        match self.admission.admit(&request) {
            Decision::Accept { passphrase } => {
                if let Some(passphrase) = passphrase {
                    if let Err(e) = crate::set_str(socket, ffi::SRTO_PASSPHRASE, "SRTO_PASSPHRASE", &passphrase) {
                        tracing::error!(socket, error = %e, "cannot set the passphrase of an incoming connection");
                        return reject(socket, RejectReason::INTERNAL);
                    }
                }
                lock(&self.pending)
                    .insert(socket, Pending { peer, stream_id: stream_id.map(str::to_string), since: Instant::now() });
                0
            }
            Decision::Reject(reason) => reject(socket, reason),
        }
    }

    /// The handshake of `socket` reached `accept`: what the callback saw of it (peer, streamid).
    pub(crate) fn accepted(&self, socket: i32) -> (Option<SocketAddr>, Option<String>) {
        lock(&self.pending).remove(&socket).map_or((None, None), |pending| (pending.peer, pending.stream_id))
    }

    pub(crate) fn fail(&self, failed: FailedHandshake) {
        if self.failed.try_send(failed).is_err() {
            self.failed_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reports the handshakes whose socket broke before it was accepted (a caller that hung up at once:
    /// libsrt drops such a socket from its accept queue without a word), and those pending for longer than
    /// [`PENDING_TIMEOUT`].
    pub(crate) fn expire_pending(&self, now: Instant) {
        let expired: Vec<(i32, Pending)> = {
            let mut pending = lock(&self.pending);
            let old: Vec<i32> = pending
                .iter()
                .filter(|(socket, p)| {
                    let age = now.duration_since(p.since);
                    age > PENDING_TIMEOUT || (age > PENDING_CHECK_AFTER && gone(**socket))
                })
                .map(|(socket, _)| *socket)
                .collect();
            old.into_iter().filter_map(|socket| pending.remove(&socket).map(|p| (socket, p))).collect()
        };
        for (socket, p) in expired {
            self.fail(FailedHandshake { socket, peer: p.peer, stream_id: p.stream_id, reason: None });
        }
    }
}

/// Whether libsrt has given up socket `socket` (broken, closing, closed or forgotten).
fn gone(socket: i32) -> bool {
    // SAFETY: plain call on an integer handle; an unknown one is answered with SRTS_NONEXIST.
    let state = unsafe { ffi::srt_getsockstate(socket) };
    matches!(state, ffi::SRTS_BROKEN | ffi::SRTS_CLOSING | ffi::SRTS_CLOSED | ffi::SRTS_NONEXIST)
}

fn reject(socket: i32, reason: RejectReason) -> c_int {
    // SAFETY: `socket` is the handle libsrt passed to the callback; an invalid one is an error return.
    unsafe {
        ffi::srt_setrejectreason(socket, reason.code());
    }
    -1
}

/// libsrt refused the handshake of `socket` after the callback accepted it; from its log. Whether a
/// listener of this process had it pending.
pub(crate) fn handshake_rejected(socket: i32, reason: Option<RejectReason>) -> bool {
    let hooks: Vec<&'static Hook> = lock(&HOOKS).clone();
    for hook in hooks {
        let pending = lock(&hook.pending).remove(&socket);
        if let Some(p) = pending {
            hook.fail(FailedHandshake { socket, peer: p.peer, stream_id: p.stream_id, reason });
            return true;
        }
    }
    false
}

/// The listen callback libsrt calls for every handshake that reaches its conclusion phase.
///
/// # Safety
/// Called by libsrt only, with the `&'static Hook` given to `srt_listen_callback` as `opaque`, a valid or
/// null `peer` and a NUL-terminated or null `stream_id`.
unsafe extern "C" fn listen_callback(
    opaque: *mut c_void,
    socket: ffi::SrtSocket,
    hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int {
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `opaque` is the leaked `&'static Hook` registered in `Listener::bind`; it is never freed.
        let hook = unsafe { &*opaque.cast::<Hook>() };
        // SAFETY: libsrt passes the caller's address, valid for the duration of the callback.
        let peer = unsafe { addr::from_c(peer) };
        let stream_id = if stream_id.is_null() {
            None
        } else {
            // SAFETY: non-null, NUL-terminated, valid for the duration of the callback.
            Some(unsafe { CStr::from_ptr(stream_id) }.to_string_lossy().into_owned())
        };
        let stream_id = stream_id.filter(|id| !id.is_empty());
        hook.decide(socket, hs_version, peer, stream_id.as_deref())
    }));
    decided.unwrap_or_else(|_| reject(socket, RejectReason::INTERNAL))
}

// === impl Listener ===

/// A listening SRT socket. Dropping it stops accepting; connections already accepted live on.
pub struct Listener {
    id: ffi::SrtSocket,
    local: SocketAddr,
    hook: &'static Hook,
    reactor: Arc<reactor::Shared>,
    accepted: mpsc::Receiver<Connection>,
    failed: mpsc::Receiver<FailedHandshake>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("id", &self.id).field("local", &self.local).finish()
    }
}

impl Listener {
    /// Binds and listens on `config.addr`; every handshake is decided by `admission`.
    pub fn bind(config: &ListenerConfig, admission: impl Admission) -> Result<Listener, SrtError> {
        crate::startup();
        // SAFETY: creates a socket handle; no pointers involved.
        let id = unsafe { ffi::srt_create_socket() };
        if id == ffi::SRT_INVALID_SOCK {
            return Err(SrtError::last("srt_create_socket"));
        }
        match Self::listen(id, config, admission) {
            Ok(listener) => Ok(listener),
            Err(e) => {
                crate::close(id);
                Err(e)
            }
        }
    }

    fn listen(id: ffi::SrtSocket, config: &ListenerConfig, admission: impl Admission) -> Result<Listener, SrtError> {
        let latency = i32::try_from(config.latency.as_millis())
            .map_err(|_| SrtError::Invalid { what: "latency", message: "too large".into() })?;
        crate::set_int(id, ffi::SRTO_TRANSTYPE, "SRTO_TRANSTYPE", ffi::SRTT_LIVE)?;
        crate::set_int(id, ffi::SRTO_RCVLATENCY, "SRTO_RCVLATENCY", latency)?;
        // accept() and the receive calls of accepted sockets (which inherit this) never block: one reactor
        // thread serves them all.
        crate::set_bool(id, ffi::SRTO_RCVSYN, "SRTO_RCVSYN", false)?;
        let (storage, len) = addr::to_c(&config.addr);
        // SAFETY: `storage` holds a sockaddr of `len` bytes and lives for the call.
        if unsafe { ffi::srt_bind(id, (&storage as *const libc::sockaddr_storage).cast(), len) } == ffi::SRT_ERROR {
            return Err(SrtError::last("srt_bind"));
        }
        let local = local_addr(id)?;

        let (failed_tx, failed) = mpsc::channel(FAILED_QUEUE);
        let hook: &'static Hook = Box::leak(Box::new(Hook {
            admission: Box::new(admission),
            pending: Mutex::new(HashMap::new()),
            failed: failed_tx,
            failed_dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }));
        // SAFETY: `listen_callback` matches `srt_listen_callback_fn`; `hook` is `'static` (leaked), so the
        // opaque pointer stays valid for every callback libsrt may ever make. libsrt only reads through it via
        // `listen_callback`, which takes a shared reference; `Hook` is `Sync`.
        let registered =
            unsafe { ffi::srt_listen_callback(id, listen_callback, (hook as *const Hook).cast_mut().cast::<c_void>()) };
        if registered == ffi::SRT_ERROR {
            return Err(SrtError::last("srt_listen_callback"));
        }
        // SAFETY: plain call on a handle.
        if unsafe { ffi::srt_listen(id, c_int::from(config.backlog)) } == ffi::SRT_ERROR {
            return Err(SrtError::last("srt_listen"));
        }
        lock(&HOOKS).push(hook);
        let (accepted_tx, accepted) = mpsc::channel(config.accept_queue.max(1));
        let reactor = match reactor::start(id, hook, accepted_tx) {
            Ok(reactor) => reactor,
            Err(e) => {
                lock(&HOOKS).retain(|h| !std::ptr::eq(*h, hook));
                return Err(e);
            }
        };
        Ok(Listener { id, local, hook, reactor, accepted, failed })
    }

    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next accepted connection or failed handshake; `None` once the listener cannot accept any more.
    pub async fn next(&mut self) -> Option<Incoming> {
        tokio::select! {
            connection = self.accepted.recv() => connection.map(Incoming::Connection),
            Some(failed) = self.failed.recv() => Some(Incoming::Failed(failed)),
        }
    }

    /// Failed handshakes not reported because [`Listener::next`] was not called fast enough.
    pub fn failed_dropped(&self) -> u64 {
        self.hook.failed_dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // New handshakes are refused from now on, even by a callback already running.
        self.hook.closed.store(true, Ordering::Release);
        lock(&HOOKS).retain(|h| !std::ptr::eq(*h, self.hook));
        self.reactor.close_listener();
        crate::close(self.id);
    }
}

fn local_addr(id: ffi::SrtSocket) -> Result<SocketAddr, SrtError> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
    // SAFETY: `storage` is valid for `len` bytes of writes.
    let result = unsafe { ffi::srt_getsockname(id, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last("srt_getsockname"));
    }
    // SAFETY: libsrt wrote a sockaddr of the bound family into `storage`.
    unsafe { addr::from_c((&storage as *const libc::sockaddr_storage).cast()) }
        .ok_or_else(|| SrtError::Invalid { what: "bound address", message: "unknown address family".into() })
}

// === impl Connection ===

/// An accepted connection. Its payloads arrive in order through [`Connection::recv`], a few packets at a
/// time; dropping it closes the socket (the peer is told).
pub struct Connection {
    pub(crate) id: ffi::SrtSocket,
    pub(crate) peer: SocketAddr,
    pub(crate) stream_id: String,
    pub(crate) key_length: u32,
    pub(crate) rx: mpsc::Receiver<Bytes>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("stream_id", &self.stream_id)
            .field("key_length", &self.key_length)
            .finish()
    }
}

impl Connection {
    pub fn id(&self) -> i32 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The streamid the caller connected with.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// AES key length in bytes (16, 24 or 32), or 0 if the connection is not encrypted.
    pub fn key_length(&self) -> u32 {
        self.key_length
    }

    /// The next payloads (one or more SRT messages, concatenated); `None` once the peer has closed the
    /// connection or it broke.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The connection's statistics now.
    pub fn stats(&self) -> Result<Stats, SrtError> {
        crate::stats(self.id)
    }

    /// Closes the connection (the peer is told); the same as dropping it.
    pub fn close(self) {}
}

impl Drop for Connection {
    fn drop(&mut self) {
        crate::close(self.id);
    }
}
