//! `SocketAddr` to and from the C `sockaddr` libsrt takes and gives.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A `sockaddr_storage` holding `addr`, and the length of the part that is used.
pub fn to_c(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::c_int) {
    // SAFETY: sockaddr_storage is plain old data for which all zero bytes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for any sockaddr_*; the write is
            // within `storage`.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::c_int)
}

/// The address `addr` points to; `None` for a null pointer or another family.
///
/// # Safety
/// `addr` is null or points to a valid `sockaddr` whose family says how large it is (as libsrt's callback
/// argument and `srt_accept` output do).
pub unsafe fn from_c(addr: *const libc::sockaddr) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: non-null and valid, as the caller promises; every sockaddr starts with its family.
    let family = i32::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in; read unaligned in case the caller's buffer is not
            // aligned for it.
            let sin = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_c() {
        for addr in ["127.0.0.1:9000", "0.0.0.0:0", "[::1]:4000", "[fe80::1%2]:1234"] {
            let addr: SocketAddr = addr.parse().expect("valid");
            let (storage, len) = to_c(&addr);
            assert!(len as usize <= std::mem::size_of::<libc::sockaddr_storage>());
            // SAFETY: `storage` holds the address `to_c` wrote.
            let back = unsafe { from_c((&storage as *const libc::sockaddr_storage).cast()) };
            assert_eq!(back, Some(addr));
        }
        // SAFETY: null is allowed.
        assert_eq!(unsafe { from_c(std::ptr::null()) }, None);
    }
}
