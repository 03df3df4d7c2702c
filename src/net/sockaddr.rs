//! Socket addresses between the kernel's `sockaddr` and the Python objects the socket module uses.
//!
//! Received addresses are built as CPython's `makesockaddr` builds them (`getnameinfo` with
//! `NI_NUMERICHOST` for IPv6 hosts, which adds scope names; dotted decimal for IPv4), so
//! `datagram_received` sees the same objects. For sending, only
//! the plain numeric forms are converted here; anything else (host names, out-of-range values,
//! other families) is left to the Python socket's own `sendto`, which resolves or raises exactly
//! as it does under asyncio.

use std::ffi::CStr;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};

use pyo3::exceptions::PyOSError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

fn numeric_host(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> PyResult<String> {
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: storage holds `len` bytes of a socket address; host is a writable buffer of the
    // size passed; no service buffer is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            (storage as *const libc::sockaddr_storage).cast(),
            len,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NUMERICHOST,
        )
    };
    if rc != 0 {
        return Err(PyOSError::new_err(format!("getnameinfo failed ({rc})")));
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string into host.
    Ok(unsafe { CStr::from_ptr(host.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// An IPv4 address in dotted decimal, as getnameinfo writes it, and its length. Written by hand:
/// `Ipv4Addr::to_string` goes through the formatting machinery and a String, about 1,100
/// instructions of the 6,100 a UDP echo server spent per datagram (callgrind).
fn dotted_quad(octets: [u8; 4]) -> ([u8; 15], usize) {
    let mut out = [0u8; 15];
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    (out, len)
}

/// The Python form of a received address: `(host, port)` for IPv4, `(host, port, flowinfo,
/// scope_id)` for IPv6, a path (str, or bytes in Linux's abstract namespace) for Unix sockets,
/// None when the datagram came without one.
pub fn to_python<'py>(
    py: Python<'py>,
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> PyResult<Bound<'py, PyAny>> {
    if len == 0 {
        return Ok(py.None().into_bound(py));
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let (host, host_len) = dotted_quad(u32::from_be(sin.sin_addr.s_addr).to_be_bytes());
            // SAFETY: dotted_quad writes ASCII digits and dots only.
            let host = unsafe { std::str::from_utf8_unchecked(&host[..host_len]) };
            Ok((PyString::new(py, host), u16::from_be(sin.sin_port))
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let host = numeric_host(storage, len)?;
            Ok((
                host,
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_UNIX => {
            // SAFETY: the family says storage holds a sockaddr_un.
            let sun = unsafe { &*(storage as *const _ as *const libc::sockaddr_un) };
            let path_len =
                (len as usize).saturating_sub(mem::offset_of!(libc::sockaddr_un, sun_path));
            // SAFETY: sun_path is an array of c_char; reading it as bytes is sound.
            let path: &[u8] = unsafe {
                std::slice::from_raw_parts(sun.sun_path.as_ptr().cast(), sun.sun_path.len())
            };
            if path_len > 0 && path[0] == 0 {
                return Ok(PyBytes::new(py, &path[..path_len.min(path.len())]).into_any());
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            // SAFETY: decoding a byte range we own, as CPython does for Unix socket paths.
            unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyUnicode_DecodeFSDefaultAndSize(
                        path.as_ptr().cast(),
                        end as ffi::Py_ssize_t,
                    ),
                )
            }
        }
        family => Err(PyOSError::new_err(format!(
            "address family {family} is not supported by ferroloop's datagram transport"
        ))),
    }
}

fn port_of(obj: &Bound<'_, PyAny>) -> Option<u16> {
    if !obj.is_instance_of::<PyInt>() {
        return None;
    }
    obj.extract::<u16>().ok()
}

/// The kernel form of a numeric `(host, port)` (IPv4) or `(host, port[, flowinfo[, scope_id]])`
/// (IPv6) address; None for anything the Python socket must convert itself.
pub fn from_python(
    family: i32,
    addr: &Bound<'_, PyAny>,
) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host = tuple.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?;
    let host = host.to_str().ok()?;
    let port = port_of(&tuple.get_item(1).ok()?)?;
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match (family, tuple.len()) {
        (libc::AF_INET, 2) => {
            let ip: Ipv4Addr = host.parse().ok()?;
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from(ip).to_be();
            Some((
                storage,
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ))
        }
        (libc::AF_INET6, 2..=4) => {
            let ip: Ipv6Addr = host.parse().ok()?;
            let field = |i: usize| match tuple.get_item(i) {
                Ok(v) if v.is_instance_of::<PyInt>() => v.extract::<u32>().ok(),
                Ok(_) => None,
                Err(_) => Some(0),
            };
            let (flowinfo, scope_id) = (field(2)?, field(3)?);
            // Python refuses a flowinfo of 2**20 or more; let it say so.
            if flowinfo >= 1 << 20 {
                return None;
            }
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = port.to_be();
            sin6.sin6_flowinfo = flowinfo.to_be();
            sin6.sin6_addr.s6_addr = ip.octets();
            sin6.sin6_scope_id = scope_id;
            Some((
                storage,
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_are_written_as_ipv4addr_displays_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [127, 0, 0, 1],
            [10, 9, 99, 100],
        ]
        .into_iter()
        .chain((0..=255u8).map(|b| [b, b.wrapping_mul(7), 255 - b, b / 3]))
        {
            let (out, len) = dotted_quad(octets);
            assert_eq!(&out[..len], Ipv4Addr::from(octets).to_string().as_bytes());
        }
    }

    fn v4(ip: [u8; 4], port: u16) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: an all-zero sockaddr_storage is valid, and large enough for a sockaddr_in.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_be_bytes(ip).to_be();
        (
            storage,
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    }

    #[test]
    fn ipv4_round_trip_matches_the_socket_module() {
        Python::initialize();
        Python::attach(|py| {
            let (storage, len) = v4([10, 0, 200, 7], 5353);
            let addr = to_python(py, &storage, len).unwrap();
            assert_eq!(
                addr.extract::<(String, u16)>().unwrap(),
                ("10.0.200.7".into(), 5353)
            );
            let (back, back_len) = from_python(libc::AF_INET, &addr).unwrap();
            assert_eq!(back_len, len);
            assert_eq!(back.ss_family, storage.ss_family);
            // SAFETY: both hold sockaddr_in, as their family says.
            let (a, b) = unsafe {
                (
                    &*(&back as *const _ as *const libc::sockaddr_in),
                    &*(&storage as *const _ as *const libc::sockaddr_in),
                )
            };
            assert_eq!(
                (a.sin_port, a.sin_addr.s_addr),
                (b.sin_port, b.sin_addr.s_addr)
            );
        });
    }

    #[test]
    fn names_and_odd_values_are_left_to_python() {
        Python::initialize();
        Python::attach(|py| {
            for addr in [
                ("localhost", 80).into_pyobject(py).unwrap().into_any(),
                ("01.2.3.4", 80).into_pyobject(py).unwrap().into_any(),
                ("1.2.3.4", 70000).into_pyobject(py).unwrap().into_any(),
                ("1.2.3.4",).into_pyobject(py).unwrap().into_any(),
            ] {
                assert!(from_python(libc::AF_INET, &addr).is_none(), "{addr}");
            }
            let scoped = ("fe80::1%lo", 80).into_pyobject(py).unwrap().into_any();
            assert!(from_python(libc::AF_INET6, &scoped).is_none());
            let flow = ("::1", 80, 1u32 << 20, 0)
                .into_pyobject(py)
                .unwrap()
                .into_any();
            assert!(from_python(libc::AF_INET6, &flow).is_none());
            let plain = ("::1", 80, 5, 0).into_pyobject(py).unwrap().into_any();
            assert!(from_python(libc::AF_INET6, &plain).is_some());
        });
    }
}
