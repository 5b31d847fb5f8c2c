//! The part of libsrt 1.5's C API (`srt/srt.h`) that ladder uses, declared by hand: a few dozen items do not
//! justify bindgen and libclang in the build. Values were read from the 1.5.1 headers; `build.rs` refuses any
//! libsrt outside 1.5.x, so they cannot drift.

use std::os::raw::{c_char, c_int, c_void};

pub type SrtSocket = c_int;

pub const SRT_INVALID_SOCK: SrtSocket = -1;
pub const SRT_ERROR: c_int = -1;

// SRT_SOCKSTATUS
pub const SRTS_CONNECTED: c_int = 5;
pub const SRTS_BROKEN: c_int = 6;
pub const SRTS_CLOSING: c_int = 7;
pub const SRTS_CLOSED: c_int = 8;
pub const SRTS_NONEXIST: c_int = 9;

// SRT_SOCKOPT
pub const SRTO_SNDSYN: c_int = 1;
pub const SRTO_RCVSYN: c_int = 2;
pub const SRTO_PASSPHRASE: c_int = 26;
pub const SRTO_PBKEYLEN: c_int = 27;
pub const SRTO_CONNTIMEO: c_int = 36;
pub const SRTO_RCVKMSTATE: c_int = 41;
pub const SRTO_RCVLATENCY: c_int = 43;
pub const SRTO_PEERLATENCY: c_int = 44;
pub const SRTO_STREAMID: c_int = 46;
pub const SRTO_TRANSTYPE: c_int = 50;
pub const SRTO_PACKETFILTER: c_int = 60;

/// `SRTT_LIVE` of `SRT_TRANSTYPE`.
pub const SRTT_LIVE: c_int = 0;
/// `SRT_KM_S_SECURED` of `SRT_KM_STATE`: the connection is encrypted.
pub const SRT_KM_S_SECURED: c_int = 2;

// SRT_EPOLL_OPT
pub const SRT_EPOLL_IN: c_int = 0x1;
pub const SRT_EPOLL_ERR: c_int = 0x8;

// Error codes (`SRT_ERRNO`): major * 1000 + minor.
pub const SRT_ECONNREJ: c_int = 1002;
pub const SRT_EASYNCRCV: c_int = 6002;

/// syslog's LOG_WARNING, the level libsrt reports rejected handshakes at.
pub const LOG_WARNING: c_int = 4;
// SRT_LOGF_*: the handler gets the bare message.
pub const SRT_LOGF_DISABLE_TIME: c_int = 1;
pub const SRT_LOGF_DISABLE_THREADNAME: c_int = 2;
pub const SRT_LOGF_DISABLE_SEVERITY: c_int = 4;
pub const SRT_LOGF_DISABLE_EOL: c_int = 8;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SrtEpollEvent {
    pub fd: SrtSocket,
    pub events: c_int,
}

/// The same size `shim.c` asserts for `struct ladder_srt_stats`, which [`crate::Stats`] mirrors field for
/// field.
const _: () = assert!(std::mem::size_of::<crate::Stats>() == 12 * 8 + 5 * 4 + 4);

pub type ListenCallback = unsafe extern "C" fn(
    opaque: *mut c_void,
    ns: SrtSocket,
    hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int;

pub type LogHandler = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

#[link(name = "srt")]
unsafe extern "C" {
    pub fn srt_startup() -> c_int;
    pub fn srt_create_socket() -> SrtSocket;
    pub fn srt_bind(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub fn srt_listen(u: SrtSocket, backlog: c_int) -> c_int;
    pub fn srt_accept(u: SrtSocket, addr: *mut libc::sockaddr, addrlen: *mut c_int) -> SrtSocket;
    pub fn srt_listen_callback(lsn: SrtSocket, hook: ListenCallback, opaque: *mut c_void) -> c_int;
    pub fn srt_connect(u: SrtSocket, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub fn srt_close(u: SrtSocket) -> c_int;
    pub fn srt_getsockname(u: SrtSocket, name: *mut libc::sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockflag(u: SrtSocket, opt: c_int, optval: *mut c_void, optlen: *mut c_int) -> c_int;
    pub fn srt_setsockflag(u: SrtSocket, opt: c_int, optval: *const c_void, optlen: c_int) -> c_int;
    pub fn srt_sendmsg(u: SrtSocket, buf: *const c_char, len: c_int, ttl: c_int, inorder: c_int) -> c_int;
    pub fn srt_recvmsg(u: SrtSocket, buf: *mut c_char, len: c_int) -> c_int;
    pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub fn srt_getlasterror_str() -> *const c_char;
    pub fn srt_getsockstate(u: SrtSocket) -> c_int;
    pub fn srt_epoll_create() -> c_int;
    pub fn srt_epoll_add_usock(eid: c_int, u: SrtSocket, events: *const c_int) -> c_int;
    pub fn srt_epoll_remove_usock(eid: c_int, u: SrtSocket) -> c_int;
    pub fn srt_epoll_uwait(eid: c_int, fds: *mut SrtEpollEvent, fds_size: c_int, ms_timeout: i64) -> c_int;
    pub fn srt_epoll_release(eid: c_int) -> c_int;
    pub fn srt_setloglevel(level: c_int);
    pub fn srt_setlogflags(flags: c_int);
    pub fn srt_setloghandler(opaque: *mut c_void, handler: LogHandler);
    pub fn srt_getrejectreason(u: SrtSocket) -> c_int;
    pub fn srt_setrejectreason(u: SrtSocket, value: c_int) -> c_int;
    pub fn srt_rejectreason_str(id: c_int) -> *const c_char;
}

unsafe extern "C" {
    /// From `shim.c`: `srt_bistats` (instantaneous, not cleared) copied into [`crate::Stats`].
    pub fn ladder_srt_stats(u: SrtSocket, out: *mut crate::Stats) -> c_int;
}
