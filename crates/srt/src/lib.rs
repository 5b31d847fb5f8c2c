//! # Layout
//! Safe bindings to libsrt 1.5, the SRT reference implementation that ffmpeg, OBS, vMix, Larix, SRS and
//! OvenMediaEngine use, for ladder's ingest. This crate is the one place in ladder where `unsafe` is
//! allowed; every `unsafe` block states why it is sound.
//!
//! - [`Listener`] (`listener.rs`): binds a listening SRT socket whose handshakes are decided by an
//!   [`Admission`] *inside* libsrt's listen callback, from the caller's streamid: accept (with the
//!   passphrase this stream needs) or refuse with a [`RejectReason`] the caller sees. Accepted connections
//!   and handshakes that failed later (wrong passphrase, encryption mismatch) come out of
//!   [`Listener::next`].
//! - `reactor.rs`: the one thread per listener that waits on libsrt's epoll, accepts and reads every
//!   connection, and hands the payloads to tokio through bounded channels; a connection whose reader falls
//!   behind is paused (left in libsrt's receive buffer) rather than dropped or allowed to stall the others.
//! - [`Connection`]: one accepted peer: its payloads, its statistics ([`Stats`]), closed on drop.
//! - [`Caller`] (`caller.rs`): a blocking SRT caller, for tests and benchmarks.
//! - `log.rs`: libsrt's log, routed to `tracing` (target `libsrt`), and the source of the reasons of
//!   handshakes that libsrt refused after the callback accepted them.
//! - `ffi.rs` + `shim.c`: the C declarations, checked against the headers at build time.
//!
//! # Invariants the unsafe code relies on
//! - An `SRTSOCKET` or epoll id is an integer handle, not a pointer: libsrt looks every handle up in its own
//!   table and answers an unknown or closed one with an error. A stale handle is therefore never undefined
//!   behaviour, only an error, and handles are not reused (libsrt counts them down from a random start).
//! - Every pointer handed to libsrt points to memory that outlives the call (stack buffers, `CString`s),
//!   except the listen callback's opaque pointer, which is leaked for the life of the process (one small
//!   allocation per listener): libsrt may run a callback that started before `srt_close` returned.
//! - No Rust panic crosses into C: the callback and the log handler run their bodies in `catch_unwind`.
//! - Strings from libsrt (streamid, error and log messages) are NUL-terminated C strings, copied before the
//!   call that produced them returns.

mod addr;
mod caller;
mod ffi;
mod listener;
mod log;
mod reactor;

use std::{ffi::CStr, fmt, sync::Once};

pub use caller::{Caller, CallerConfig};
pub use listener::{Admission, Connection, Decision, FailedHandshake, Incoming, Listener, ListenerConfig, Request};

/// Errors of libsrt calls.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SrtError {
    /// A libsrt call failed; `code` is libsrt's `SRT_ERRNO`.
    #[error("{call}: {message} (srt error {code})")]
    Call { call: &'static str, code: i32, message: String },
    /// The peer refused the connection at the handshake.
    #[error("connection rejected: {0}")]
    Rejected(RejectReason),
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
}

impl SrtError {
    /// libsrt's error code of the current thread's last failed call.
    fn last(call: &'static str) -> SrtError {
        // SAFETY: both read thread-local state of libsrt; a null `errno_loc` is allowed by the API. The
        // message is a NUL-terminated string owned by libsrt until the next call on this thread; it is copied
        // at once.
        let (code, message) = unsafe {
            let code = ffi::srt_getlasterror(std::ptr::null_mut());
            let message = ffi::srt_getlasterror_str();
            (code, c_string(message))
        };
        SrtError::Call { call, code, message }
    }

    /// libsrt's `SRT_ERRNO`, if this is a failed call.
    pub fn code(&self) -> Option<i32> {
        match self {
            SrtError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Copies a C string from libsrt; empty for a null pointer.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string valid for the duration of the call.
unsafe fn c_string(ptr: *const std::os::raw::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, as the caller promises.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Starts libsrt once per process and routes its log to `tracing`. Every entry point calls it.
fn startup() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        // SAFETY: srt_startup initialises libsrt's global state; it is called once, before any other call.
        // The log settings are plain values; the handler is a `'static` function that never unwinds into C
        // (see `log::handler`) and ignores its opaque pointer, which is null.
        unsafe {
            ffi::srt_startup();
            ffi::srt_setlogflags(
                ffi::SRT_LOGF_DISABLE_TIME
                    | ffi::SRT_LOGF_DISABLE_THREADNAME
                    | ffi::SRT_LOGF_DISABLE_SEVERITY
                    | ffi::SRT_LOGF_DISABLE_EOL,
            );
            ffi::srt_setloglevel(ffi::LOG_WARNING);
            ffi::srt_setloghandler(std::ptr::null_mut(), log::handler);
        }
    });
}

// === impl RejectReason ===

/// Why a handshake was refused, as the caller sees it (`srt_getrejectreason`, shown by ffmpeg as
/// "Connection rejected: ..." and by srt-live-transmit as the reject reason).
///
/// Codes below 1000 are libsrt's own (`SRT_REJ_*`: a wrong passphrase is [`RejectReason::BAD_SECRET`]);
/// 1000 to 1999 are the predefined application codes of SRT's access control convention (`SRT_REJX_*`,
/// 1000 + an HTTP status), which is what ladder's admission uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectReason(pub i32);

impl RejectReason {
    /// `SRT_REJ_PEER`: the peer refused (a caller sees this when the listener's callback refused).
    pub const PEER: RejectReason = RejectReason(2);
    /// `SRT_REJ_BACKLOG`: the listener's accept queue was full.
    pub const BACKLOG: RejectReason = RejectReason(5);
    /// `SRT_REJ_BADSECRET`: both sides encrypt, with different passphrases.
    pub const BAD_SECRET: RejectReason = RejectReason(10);
    /// `SRT_REJ_UNSECURE`: one side has a passphrase, the other none.
    pub const UNSECURE: RejectReason = RejectReason(11);
    /// `SRT_REJ_MESSAGEAPI`: stream API against message API (`transtype=file` against live).
    pub const MESSAGE_API: RejectReason = RejectReason(12);
    /// `SRT_REJ_CONGESTION`: congestion controllers differ (`transtype=file` against live).
    pub const CONGESTION: RejectReason = RejectReason(13);
    /// `SRT_REJ_FILTER`: incompatible packet filters.
    pub const FILTER: RejectReason = RejectReason(14);
    /// `SRT_REJ_TIMEOUT`: the handshake timed out.
    pub const TIMEOUT: RejectReason = RejectReason(16);

    /// `SRT_REJX_BAD_REQUEST`: the streamid cannot be parsed or names no valid stream.
    pub const BAD_REQUEST: RejectReason = RejectReason(1400);
    /// `SRT_REJX_UNAUTHORIZED`: the stream needs a key.
    pub const UNAUTHORIZED: RejectReason = RejectReason(1401);
    /// `SRT_REJX_OVERLOAD`: the server has no room for another connection.
    pub const OVERLOAD: RejectReason = RejectReason(1402);
    /// `SRT_REJX_FORBIDDEN`: access to this stream is refused.
    pub const FORBIDDEN: RejectReason = RejectReason(1403);
    /// `SRT_REJX_NOTFOUND`: no such stream.
    pub const NOT_FOUND: RejectReason = RejectReason(1404);
    /// `SRT_REJX_BAD_MODE`: the `m=` of the streamid is not supported.
    pub const BAD_MODE: RejectReason = RejectReason(1405);
    /// `SRT_REJX_CONFLICT`: the stream is already being published.
    pub const CONFLICT: RejectReason = RejectReason(1409);
    /// `SRT_REJX_ISE`: an internal error of the server.
    pub const INTERNAL: RejectReason = RejectReason(1500);
    /// `SRT_REJX_DOWN`: the service is unavailable (shutting down).
    pub const UNAVAILABLE: RejectReason = RejectReason(1503);

    pub fn code(self) -> i32 {
        self.0
    }

    /// libsrt's symbolic names of its own reasons, in code order (`srt_rejectreason_name` in 1.5).
    const CORE_NAMES: [&'static str; 17] = [
        "UNKNOWN",
        "SYSTEM",
        "PEER",
        "RESOURCE",
        "ROGUE",
        "BACKLOG",
        "IPE",
        "CLOSE",
        "VERSION",
        "RDVCOOKIE",
        "BADSECRET",
        "UNSECURE",
        "MESSAGEAPI",
        "CONGESTION",
        "FILTER",
        "GROUP",
        "TIMEOUT",
    ];

    /// A reason as libsrt writes it in its log (`BADSECRET`, `PREDEFINED:409`, `USERDEFINED:7`).
    pub fn from_log_name(name: &str) -> Option<RejectReason> {
        if let Some(code) = name.strip_prefix("PREDEFINED:") {
            return code.parse::<i32>().ok().map(|code| RejectReason(1000 + code));
        }
        if let Some(code) = name.strip_prefix("USERDEFINED:") {
            return code.parse::<i32>().ok().map(|code| RejectReason(2000 + code));
        }
        let index = Self::CORE_NAMES.iter().position(|known| *known == name)?;
        i32::try_from(index).ok().map(RejectReason)
    }

    /// A short name: `BADSECRET`, `CONFLICT`, ...
    pub fn name(self) -> String {
        let predefined = match self.0 {
            1400 => Some("BAD_REQUEST"),
            1401 => Some("UNAUTHORIZED"),
            1402 => Some("OVERLOAD"),
            1403 => Some("FORBIDDEN"),
            1404 => Some("NOTFOUND"),
            1405 => Some("BAD_MODE"),
            1409 => Some("CONFLICT"),
            1500 => Some("ISE"),
            1503 => Some("DOWN"),
            _ => None,
        };
        if let Some(name) = predefined {
            return name.to_string();
        }
        match usize::try_from(self.0).ok().and_then(|index| Self::CORE_NAMES.get(index)) {
            Some(name) => (*name).to_string(),
            None => format!("REJECT_{}", self.0),
        }
    }

    /// libsrt's description of its own reasons; ladder's words for the access control codes it uses.
    pub fn description(self) -> String {
        match self.0 {
            0..=999 => {
                startup();
                // SAFETY: srt_rejectreason_str returns a pointer to a static string for any code (a generic
                // text for unknown ones).
                unsafe { c_string(ffi::srt_rejectreason_str(self.0)) }
            }
            1400 => "bad request: the streamid names no valid stream".into(),
            1401 => "unauthorized: this stream needs its key as passphrase".into(),
            1402 => "overload: the server takes no more publishers".into(),
            1403 => "forbidden: publishing to this stream is not allowed".into(),
            1404 => "not found".into(),
            1405 => "bad mode: only m=publish is accepted".into(),
            1409 => "conflict: the stream already has a live publisher".into(),
            1500 => "internal server error".into(),
            1503 => "unavailable: the server is shutting down".into(),
            code => format!("application reject code {code}"),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.0, self.name(), self.description())
    }
}

impl fmt::Debug for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RejectReason({} {})", self.0, self.name())
    }
}

// === impl Stats ===

/// A connection's statistics from `srt_bistats`: totals since the connection started, and the current
/// value of the instantaneous ones (RTT, rates, buffer, flight). Filled in by `shim.c`, whose
/// `struct ladder_srt_stats` this mirrors field for field (`repr(C)`; the size is asserted on both sides).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub elapsed_ms: i64,
    pub rtt_ms: f64,
    pub recv_rate_mbps: f64,
    pub bandwidth_mbps: f64,
    pub bytes_received: u64,
    pub packets_received: i64,
    /// Packets reported lost by the receiver (each may still have been recovered by a retransmission).
    pub packets_lost: i64,
    /// Retransmitted packets received.
    pub packets_retransmitted: i64,
    /// Packets given up as too late to play: what the application never got.
    pub packets_dropped: i64,
    pub packets_undecrypted: i64,
    pub packets_belated: i64,
    pub packets_filter_supplied: i64,
    pub flight_size: i32,
    pub recv_buffer_ms: i32,
    pub recv_buffer_bytes: i32,
    pub recv_buffer_packets: i32,
    /// The negotiated receive latency (TSBPD delay).
    pub latency_ms: i32,
}

/// The statistics of socket `id`.
fn stats(id: ffi::SrtSocket) -> Result<Stats, SrtError> {
    let mut out = Stats::default();
    // SAFETY: `out` is a valid, exclusively borrowed `Stats`, which is `repr(C)` with the fields of `shim.c`'s
    // struct in the same order and types (sizes asserted on both sides); an invalid `id` is an error return,
    // not UB.
    let result = unsafe { ffi::ladder_srt_stats(id, &mut out) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last("srt_bistats"));
    }
    Ok(out)
}

// === socket options ===

fn set_int(id: ffi::SrtSocket, opt: i32, name: &'static str, value: i32) -> Result<(), SrtError> {
    // SAFETY: the option value is an `int` on the stack, valid for the call; libsrt copies it.
    let result =
        unsafe { ffi::srt_setsockflag(id, opt, (&value as *const i32).cast(), std::mem::size_of::<i32>() as i32) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(())
}

fn set_bool(id: ffi::SrtSocket, opt: i32, name: &'static str, value: bool) -> Result<(), SrtError> {
    // libsrt reads boolean options as `bool` (one byte) or `int`; an int is accepted for every one of them.
    set_int(id, opt, name, i32::from(value))
}

fn set_str(id: ffi::SrtSocket, opt: i32, name: &'static str, value: &str) -> Result<(), SrtError> {
    let len = i32::try_from(value.len()).map_err(|_| SrtError::Invalid { what: name, message: "too long".into() })?;
    // SAFETY: string options are passed as pointer + length (no NUL needed); the bytes live for the call and
    // libsrt copies them.
    let result = unsafe { ffi::srt_setsockflag(id, opt, value.as_ptr().cast(), len) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(())
}

fn get_int(id: ffi::SrtSocket, opt: i32, name: &'static str) -> Result<i32, SrtError> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: `value` and `len` are valid for writes of an int each, and `len` says how large `value` is.
    let result = unsafe { ffi::srt_getsockflag(id, opt, (&mut value as *mut i32).cast(), &mut len) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(value)
}

/// The streamid of an accepted socket (at most 512 bytes in SRT).
fn get_stream_id(id: ffi::SrtSocket) -> Result<String, SrtError> {
    let mut buf = [0u8; 768];
    let mut len = buf.len() as i32;
    // SAFETY: `buf` is valid for `len` bytes of writes; libsrt writes at most `len` bytes and sets `len` to
    // the length of the value.
    let result = unsafe { ffi::srt_getsockflag(id, ffi::SRTO_STREAMID, buf.as_mut_ptr().cast(), &mut len) };
    if result == ffi::SRT_ERROR {
        return Err(SrtError::last("SRTO_STREAMID"));
    }
    let len = usize::try_from(len).unwrap_or(0).min(buf.len());
    let value = &buf[..len];
    // libsrt may count a terminating NUL.
    let value = value.split(|b| *b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(value).into_owned())
}

fn close(id: ffi::SrtSocket) {
    // SAFETY: closing a handle that is already closed or unknown returns an error and does nothing else.
    unsafe {
        ffi::srt_close(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reasons_read_from_the_log_are_the_codes_callers_see() {
        assert_eq!(RejectReason::from_log_name("BADSECRET"), Some(RejectReason::BAD_SECRET));
        assert_eq!(RejectReason::from_log_name("UNSECURE"), Some(RejectReason::UNSECURE));
        assert_eq!(RejectReason::from_log_name("CONGESTION"), Some(RejectReason::CONGESTION));
        assert_eq!(RejectReason::from_log_name("PREDEFINED:409"), Some(RejectReason::CONFLICT));
        assert_eq!(RejectReason::from_log_name("USERDEFINED:7"), Some(RejectReason(2007)));
        assert_eq!(RejectReason::from_log_name("nonsense"), None);
    }

    #[test]
    fn reject_reasons_print_code_name_and_meaning() {
        assert_eq!(RejectReason::CONFLICT.name(), "CONFLICT");
        assert!(RejectReason::CONFLICT.to_string().starts_with("1409 CONFLICT (conflict"));
        assert_eq!(RejectReason::BAD_SECRET.name(), "BADSECRET");
        let text = RejectReason::BAD_SECRET.to_string();
        assert!(text.starts_with("10 BADSECRET ("), "{text}");
        assert!(text.len() > "10 BADSECRET ()".len(), "libsrt describes its own reasons: {text}");
        assert_eq!(RejectReason(1999).name(), "REJECT_1999");
    }
}
