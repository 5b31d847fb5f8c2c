//! The thread that serves one listener: waits on a libsrt epoll holding the listening socket and every
//! connection it accepted, accepts, and reads payloads into each connection's bounded channel.
//!
//! A connection whose reader does not keep up (its channel is full) is taken out of the epoll: its data
//! waits in libsrt's receive buffer and the thread goes on with the others. Every [`TICK`] the thread puts
//! such connections back once their channel has room, forgets the ones whose reader is gone, and expires
//! handshakes that never completed. The thread ends when the listener is closed and its last connection has
//! ended.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    addr, ffi,
    listener::{Connection, FailedHandshake, Hook},
    SrtError,
};

/// Longest wait in the epoll: how soon a paused connection resumes and a closed listener is noticed.
const TICK: Duration = Duration::from_millis(50);
/// Batches of payload a connection may have waiting for its reader (each up to [`MAX_BATCH`]).
const CONNECTION_QUEUE: usize = 256;
/// Bytes read from one connection before the thread turns to the next one.
const MAX_BATCH: usize = 64 * 1024;
/// How long after the latency a hung-up connection is still read.
const DRAIN_MARGIN: Duration = Duration::from_millis(300);
/// Larger than any SRT live payload (1456 bytes at most).
const MAX_PAYLOAD: usize = 1500;

pub(crate) struct Shared {
    eid: i32,
    listener: ffi::SrtSocket,
    listener_open: AtomicBool,
}

impl Shared {
    /// Stops accepting: called when the [`crate::Listener`] is dropped.
    pub(crate) fn close_listener(&self) {
        self.listener_open.store(false, Ordering::Release);
        // SAFETY: plain calls on integer handles.
        unsafe {
            ffi::srt_epoll_remove_usock(self.eid, self.listener);
        }
    }
}

struct Entry {
    tx: mpsc::Sender<Bytes>,
    /// Taken out of the epoll because `tx` was full.
    paused: bool,
    /// The peer has hung up, but libsrt still holds packets back until their delivery time (TSBPD): read on
    /// every tick until this deadline passes.
    draining: Option<Instant>,
    /// The negotiated receive latency.
    latency: Duration,
}

pub(crate) fn start(
    listener: ffi::SrtSocket,
    hook: &'static Hook,
    accepted: mpsc::Sender<Connection>,
) -> Result<Arc<Shared>, SrtError> {
    // SAFETY: creates an epoll handle; no pointers.
    let eid = unsafe { ffi::srt_epoll_create() };
    if eid < 0 {
        return Err(SrtError::last("srt_epoll_create"));
    }
    let shared = Arc::new(Shared { eid, listener, listener_open: AtomicBool::new(true) });
    add(eid, listener).inspect_err(|_| release(eid))?;
    let reactor = Reactor {
        shared: Arc::clone(&shared),
        hook,
        accepted,
        connections: HashMap::new(),
        scratch: Box::new([0; MAX_BATCH + MAX_PAYLOAD]),
    };
    std::thread::Builder::new().name("srt-reactor".into()).spawn(move || reactor.run()).map_err(|e| {
        release(eid);
        SrtError::Invalid { what: "reactor thread", message: e.to_string() }
    })?;
    Ok(shared)
}

fn add(eid: i32, socket: ffi::SrtSocket) -> Result<(), SrtError> {
    let events = ffi::SRT_EPOLL_IN | ffi::SRT_EPOLL_ERR;
    // SAFETY: `events` lives for the call; handles are integers.
    if unsafe { ffi::srt_epoll_add_usock(eid, socket, &events) } == ffi::SRT_ERROR {
        return Err(SrtError::last("srt_epoll_add_usock"));
    }
    Ok(())
}

fn remove(eid: i32, socket: ffi::SrtSocket) {
    // SAFETY: plain call on integer handles; removing an absent socket is an error return.
    unsafe {
        ffi::srt_epoll_remove_usock(eid, socket);
    }
}

fn release(eid: i32) {
    // SAFETY: plain call on an integer handle.
    unsafe {
        ffi::srt_epoll_release(eid);
    }
}

struct Reactor {
    shared: Arc<Shared>,
    hook: &'static Hook,
    accepted: mpsc::Sender<Connection>,
    connections: HashMap<ffi::SrtSocket, Entry>,
    /// Where [`read_batch`] reads before copying out exactly what arrived.
    scratch: Box<[u8; MAX_BATCH + MAX_PAYLOAD]>,
}

impl Reactor {
    fn run(mut self) {
        let eid = self.shared.eid;
        let mut events = vec![ffi::SrtEpollEvent::default(); 256];
        let mut last_tick = Instant::now();
        loop {
            let open = self.shared.listener_open.load(Ordering::Acquire);
            if !open && self.connections.is_empty() {
                break;
            }
            // SAFETY: `events` is valid for `len` elements of writes; libsrt writes at most that many.
            let ready =
                unsafe { ffi::srt_epoll_uwait(eid, events.as_mut_ptr(), events.len() as i32, TICK.as_millis() as i64) };
            if ready < 0 {
                // Nothing to wait on (every connection paused, the listener closed) or a timeout: both return
                // an error in libsrt 1.5.
                std::thread::sleep(Duration::from_millis(5).min(TICK));
            }
            for event in events.iter().take(usize::try_from(ready).unwrap_or(0)) {
                if event.fd == self.shared.listener {
                    if self.shared.listener_open.load(Ordering::Acquire) {
                        self.accept_all();
                    }
                } else {
                    self.serve(event.fd, event.events);
                }
            }
            let now = Instant::now();
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
            }
        }
        release(eid);
        tracing::debug!(listener = self.shared.listener, "srt reactor stopped");
    }

    fn accept_all(&mut self) {
        loop {
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as i32;
            // SAFETY: `storage` is valid for `len` bytes of writes. The listener does not block (RCVSYN off).
            let socket = unsafe {
                ffi::srt_accept(self.shared.listener, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len)
            };
            if socket == ffi::SRT_INVALID_SOCK {
                let error = SrtError::last("srt_accept");
                if error.code() != Some(ffi::SRT_EASYNCRCV) {
                    tracing::debug!(%error, "accept failed");
                }
                return;
            }
            let (pending_peer, pending_stream_id) = self.hook.accepted(socket);
            // SAFETY: libsrt wrote the peer's sockaddr into `storage`.
            let peer = unsafe { addr::from_c((&storage as *const libc::sockaddr_storage).cast()) }
                .or(pending_peer)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            if let Err(error) = self.admit(socket, peer) {
                // Mostly a caller that hung up right after the handshake: its socket is broken already. It is
                // reported as a failed handshake, so that whoever admitted it forgets it.
                tracing::debug!(socket, %peer, %error, "accepted srt connection is unusable, closing it");
                remove(self.shared.eid, socket);
                self.connections.remove(&socket);
                crate::close(socket);
                self.hook.fail(FailedHandshake {
                    socket,
                    peer: Some(peer),
                    stream_id: pending_stream_id,
                    reason: None,
                });
            }
        }
    }

    fn admit(&mut self, socket: ffi::SrtSocket, peer: SocketAddr) -> Result<(), SrtError> {
        crate::set_bool(socket, ffi::SRTO_RCVSYN, "SRTO_RCVSYN", false)?;
        let stream_id = crate::get_stream_id(socket)?;
        let secured = crate::get_int(socket, ffi::SRTO_RCVKMSTATE, "SRTO_RCVKMSTATE")? == ffi::SRT_KM_S_SECURED;
        let key_length = if secured {
            u32::try_from(crate::get_int(socket, ffi::SRTO_PBKEYLEN, "SRTO_PBKEYLEN")?).unwrap_or(0)
        } else {
            0
        };
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        let latency = crate::get_int(socket, ffi::SRTO_RCVLATENCY, "SRTO_RCVLATENCY").unwrap_or(0);
        let latency = Duration::from_millis(u64::try_from(latency).unwrap_or(0));
        self.connections.insert(socket, Entry { tx, paused: false, draining: None, latency });
        add(self.shared.eid, socket)?;
        let connection = Connection { id: socket, peer, stream_id, key_length, rx };
        match self.accepted.try_send(connection) {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = match e {
                    TrySendError::Full(_) => "the accept queue is full",
                    TrySendError::Closed(_) => "the listener is closed",
                };
                // Dropping the connection (inside `e`) closes the socket.
                drop(e);
                remove(self.shared.eid, socket);
                self.connections.remove(&socket);
                tracing::warn!(socket, %peer, reason, "accepted srt connection closed at once");
                Err(SrtError::Invalid { what: "accepted connection", message: reason.to_string() })
            }
        }
    }

    /// Reads what `socket` has, up to [`MAX_BATCH`], into its channel.
    fn serve(&mut self, socket: ffi::SrtSocket, events: i32) {
        let eid = self.shared.eid;
        // A clone (a reference count) so that the permit does not borrow `self`.
        let Some(tx) = self.connections.get(&socket).map(|entry| entry.tx.clone()) else {
            remove(eid, socket);
            return;
        };
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(TrySendError::Full(())) => {
                remove(eid, socket);
                if let Some(entry) = self.connections.get_mut(&socket) {
                    entry.paused = true;
                }
                return;
            }
            Err(TrySendError::Closed(())) => {
                self.forget(socket);
                return;
            }
        };
        let (batch, ended) = read_batch(socket, events & ffi::SRT_EPOLL_ERR != 0, &mut self.scratch);
        if !batch.is_empty() {
            permit.send(batch);
        } else {
            drop(permit);
        }
        if ended {
            self.hung_up(socket);
        }
    }

    /// The peer hung up or the connection broke. libsrt delivers a live packet only at its play time (the
    /// packet's timestamp plus the latency), even then: with a 2 s latency, the last 2 s a publisher sent are
    /// still in the receive buffer when it closes. They are read as they become due, on every tick, until the
    /// latency and a margin have passed (libsrt cannot say how many are left: a broken socket has no
    /// statistics); then the connection ends.
    fn hung_up(&mut self, socket: ffi::SrtSocket) {
        remove(self.shared.eid, socket);
        let now = Instant::now();
        match self.connections.get_mut(&socket) {
            Some(entry) if entry.draining.is_none() => entry.draining = Some(now + entry.latency + DRAIN_MARGIN),
            Some(entry) if entry.draining.is_some_and(|deadline| now < deadline) => {}
            _ => self.forget(socket),
        }
    }

    /// Reads the packets of a hung-up connection that have become due.
    fn drain(&mut self, socket: ffi::SrtSocket) {
        let Some(tx) = self.connections.get(&socket).map(|entry| entry.tx.clone()) else { return };
        // Full: the next tick.
        let Ok(permit) = tx.try_reserve() else { return };
        let (batch, _) = read_batch(socket, true, &mut self.scratch);
        if !batch.is_empty() {
            permit.send(batch);
        }
        self.hung_up(socket);
    }

    /// The connection ended or its reader is gone: out of the epoll, channel closed. The socket itself is
    /// closed by the [`Connection`] when it is dropped (its statistics stay readable until then).
    fn forget(&mut self, socket: ffi::SrtSocket) {
        remove(self.shared.eid, socket);
        self.connections.remove(&socket);
    }

    fn tick(&mut self, now: Instant) {
        let eid = self.shared.eid;
        let mut gone = Vec::new();
        let mut draining = Vec::new();
        for (socket, entry) in &mut self.connections {
            if entry.tx.is_closed() {
                gone.push(*socket);
            } else if entry.draining.is_some() {
                draining.push(*socket);
            } else if entry.paused && entry.tx.capacity() >= CONNECTION_QUEUE / 2 {
                match add(eid, *socket) {
                    Ok(()) => entry.paused = false,
                    Err(_) => gone.push(*socket),
                }
            }
        }
        for socket in gone {
            self.forget(socket);
        }
        for socket in draining {
            self.drain(socket);
        }
        self.hook.expire_pending(now);
    }
}

/// Reads what `socket` has ready, up to [`MAX_BATCH`], through the reactor's `scratch` buffer (so a batch
/// of one packet holds one packet's worth of memory, not a batch-sized allocation); whether the connection
/// has ended (broken, closed, or `error_event` and nothing to read).
fn read_batch(socket: ffi::SrtSocket, error_event: bool, scratch: &mut [u8; MAX_BATCH + MAX_PAYLOAD]) -> (Bytes, bool) {
    let mut len = 0;
    let mut ended = false;
    while len < MAX_BATCH {
        let free = &mut scratch[len..len + MAX_PAYLOAD];
        // SAFETY: `free` is valid for `MAX_PAYLOAD` bytes of writes; libsrt writes at most that many and returns
        // how many it wrote.
        let read = unsafe { ffi::srt_recvmsg(socket, free.as_mut_ptr().cast(), MAX_PAYLOAD as i32) };
        if read > 0 {
            len += usize::try_from(read).unwrap_or(0).min(MAX_PAYLOAD);
            continue;
        }
        if read == ffi::SRT_ERROR {
            let error = SrtError::last("srt_recvmsg");
            if error.code() == Some(ffi::SRT_EASYNCRCV) {
                ended = error_event && len == 0;
            } else {
                tracing::trace!(socket, %error, "srt connection ended");
                ended = true;
            }
        }
        break;
    }
    (Bytes::copy_from_slice(&scratch[..len]), ended)
}
