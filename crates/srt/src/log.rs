//! libsrt's log: forwarded to `tracing` (target `libsrt`, at debug level: a remote peer can make libsrt log
//! at will, so none of it is allowed to flood an operator's log), and read for one thing ladder needs:
//! the reason of a handshake that libsrt refused *after* the listen callback accepted it. libsrt 1.5 reports
//! that only in its log, at warning level, as
//! `@<socket>:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:<REASON>`.

use std::{
    os::raw::{c_char, c_int, c_void},
    panic::{catch_unwind, AssertUnwindSafe},
};

use crate::{c_string, listener, RejectReason};

/// libsrt's log handler (`SRT_LOG_HANDLER_FN`).
///
/// # Safety
/// Called by libsrt only, with NUL-terminated or null strings valid for the duration of the call.
pub(crate) unsafe extern "C" fn handler(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as promised by libsrt for the duration of this call.
        let message = unsafe { c_string(message) };
        if let Some((socket, reason)) = rejected_handshake(&message) {
            if listener::handshake_rejected(socket, reason) {
                return;
            }
        }
        // SAFETY: as above.
        let area = unsafe { c_string(area) };
        tracing::debug!(target: "libsrt", level, %area, "{}", message.trim_end());
    }));
}

/// The socket and reason of a "connection rejected" log line.
fn rejected_handshake(message: &str) -> Option<(i32, Option<RejectReason>)> {
    let at = message.find("newConnection: connection rejected")?;
    let prefix = &message[..at];
    let socket = prefix.rsplit('@').next()?.trim_end_matches(':').trim().parse::<i32>().ok()?;
    let reason = message[at..]
        .split("ERROR:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(RejectReason::from_log_name);
    Some((socket, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_read_from_libsrts_log_line() {
        let line = "@771243110:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:BADSECRET";
        assert_eq!(rejected_handshake(line), Some((771243110, Some(RejectReason::BAD_SECRET))));
        let line = " SRT.cn: @5:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:PREDEFINED:409";
        assert_eq!(rejected_handshake(line), Some((5, Some(RejectReason::CONFLICT))));
        let line = "@5:newConnection: connection rejected due to: IPE when mapping a socket - ERROR:what";
        assert_eq!(rejected_handshake(line), Some((5, None)));
        assert_eq!(rejected_handshake("@5:processConnectRequest: something else"), None);
    }
}
