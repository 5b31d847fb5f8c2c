//! A blocking SRT caller (the publishing side), for ladder's tests and benchmarks: it connects the way
//! ffmpeg or OBS do, so a refusal comes back as the same [`RejectReason`] they would show.

use std::{net::SocketAddr, time::Duration};

use crate::{addr, ffi, RejectReason, SrtError, Stats};

/// Settings of a [`Caller`].
#[derive(Debug, Clone)]
pub struct CallerConfig {
    pub addr: SocketAddr,
    pub stream_id: Option<String>,
    pub passphrase: Option<String>,
    /// AES key length in bytes (16, 24, 32); libsrt's default (16) when `None`.
    pub key_length: Option<u32>,
    pub latency: Duration,
    pub connect_timeout: Duration,
    /// `SRTO_PACKETFILTER`, for example `fec,cols:10,rows:5`.
    pub packet_filter: Option<String>,
}

impl CallerConfig {
    pub fn new(addr: SocketAddr, stream_id: &str) -> CallerConfig {
        CallerConfig {
            addr,
            stream_id: Some(stream_id.to_string()),
            passphrase: None,
            key_length: None,
            latency: Duration::from_millis(120),
            connect_timeout: Duration::from_secs(3),
            packet_filter: None,
        }
    }
}

/// A connected caller; closed on drop.
#[derive(Debug)]
pub struct Caller {
    id: ffi::SrtSocket,
}

/// SRT live payloads carry whole TS packets: 7 x 188 bytes, as ffmpeg sends them.
pub const PAYLOAD: usize = 1316;

impl Caller {
    /// Connects (blocking, up to `connect_timeout`). A refusal is [`SrtError::Rejected`].
    pub fn connect(config: &CallerConfig) -> Result<Caller, SrtError> {
        crate::startup();
        // SAFETY: creates a socket handle; no pointers.
        let id = unsafe { ffi::srt_create_socket() };
        if id == ffi::SRT_INVALID_SOCK {
            return Err(SrtError::last("srt_create_socket"));
        }
        let caller = Caller { id };
        caller.configure(config)?;
        let (storage, len) = addr::to_c(&config.addr);
        // SAFETY: `storage` holds a sockaddr of `len` bytes and lives for the call.
        let result = unsafe { ffi::srt_connect(id, (&storage as *const libc::sockaddr_storage).cast(), len) };
        if result == ffi::SRT_ERROR {
            let error = SrtError::last("srt_connect");
            if error.code() == Some(ffi::SRT_ECONNREJ) {
                // SAFETY: plain call on a handle.
                let reason = unsafe { ffi::srt_getrejectreason(id) };
                return Err(SrtError::Rejected(RejectReason(reason)));
            }
            return Err(error);
        }
        Ok(caller)
    }

    fn configure(&self, config: &CallerConfig) -> Result<(), SrtError> {
        let id = self.id;
        let millis = |d: Duration, what| {
            i32::try_from(d.as_millis()).map_err(|_| SrtError::Invalid { what, message: "too large".into() })
        };
        crate::set_int(id, ffi::SRTO_TRANSTYPE, "SRTO_TRANSTYPE", ffi::SRTT_LIVE)?;
        crate::set_int(id, ffi::SRTO_RCVLATENCY, "SRTO_RCVLATENCY", millis(config.latency, "latency")?)?;
        crate::set_int(id, ffi::SRTO_PEERLATENCY, "SRTO_PEERLATENCY", millis(config.latency, "latency")?)?;
        crate::set_int(id, ffi::SRTO_CONNTIMEO, "SRTO_CONNTIMEO", millis(config.connect_timeout, "connect timeout")?)?;
        crate::set_bool(id, ffi::SRTO_SNDSYN, "SRTO_SNDSYN", true)?;
        if let Some(stream_id) = &config.stream_id {
            crate::set_str(id, ffi::SRTO_STREAMID, "SRTO_STREAMID", stream_id)?;
        }
        if let Some(passphrase) = &config.passphrase {
            crate::set_str(id, ffi::SRTO_PASSPHRASE, "SRTO_PASSPHRASE", passphrase)?;
        }
        if let Some(key_length) = config.key_length {
            let key_length = i32::try_from(key_length)
                .map_err(|_| SrtError::Invalid { what: "key length", message: key_length.to_string() })?;
            crate::set_int(id, ffi::SRTO_PBKEYLEN, "SRTO_PBKEYLEN", key_length)?;
        }
        if let Some(filter) = &config.packet_filter {
            crate::set_str(id, ffi::SRTO_PACKETFILTER, "SRTO_PACKETFILTER", filter)?;
        }
        Ok(())
    }

    /// Sends `data` as live messages of up to [`PAYLOAD`] bytes, blocking while the send buffer is full.
    pub fn send(&self, data: &[u8]) -> Result<(), SrtError> {
        for chunk in data.chunks(PAYLOAD) {
            // SAFETY: `chunk` is valid for `chunk.len()` bytes of reads (at most PAYLOAD, fits an int); libsrt
            // copies it into its send buffer.
            let sent = unsafe { ffi::srt_sendmsg(self.id, chunk.as_ptr().cast(), chunk.len() as i32, -1, 1) };
            if sent == ffi::SRT_ERROR {
                return Err(SrtError::last("srt_sendmsg"));
            }
        }
        Ok(())
    }

    /// Whether the connection is still up (the listener may have closed it).
    pub fn is_connected(&self) -> bool {
        // SAFETY: plain call on a handle.
        unsafe { ffi::srt_getsockstate(self.id) == ffi::SRTS_CONNECTED }
    }

    pub fn stats(&self) -> Result<Stats, SrtError> {
        crate::stats(self.id)
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        crate::close(self.id);
    }
}
