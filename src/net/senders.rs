//! The addresses a datagram socket heard from last, in both their forms.
//!
//! A UDP server sees the same few peers over and over, and answers each datagram to the address
//! it came with. Building that address tuple (`('127.0.0.1', 40000)`: a str formatted from the
//! octets, an int, the tuple) and freeing it afterwards cost about 600 of the 4,100 instructions
//! an echoed datagram took (callgrind). So the last few senders are kept: a datagram from one of
//! them is handed the tuple made for it before, and a reply to any of those tuples is sent to the
//! kernel address it came from, without parsing the tuple back. The tuples are immutable, made of
//! a str and ints, and equal to what asyncio would build; only their identity is shared between
//! datagrams.

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

/// How many senders are remembered: a handful of peers at once is the common case, and a miss
/// costs one comparison per slot.
const CAPACITY: usize = 8;

/// Room for the largest address remembered, a `sockaddr_in6`.
const KEY_SIZE: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// An IP address as the kernel reported it, zero-padded to a fixed size: compared whole, without
/// a call to memcmp, and turned back into the socket address it came from.
type Key = [u8; KEY_SIZE];

fn key(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Key {
    let len = (len as usize).min(KEY_SIZE);
    // SAFETY: storage is a plain struct larger than KEY_SIZE; `len` is clamped to KEY_SIZE.
    let raw = unsafe {
        std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast(), len)
    };
    let mut key = [0; KEY_SIZE];
    key[..len].copy_from_slice(raw);
    key
}

fn storage_of(key: &Key) -> libc::sockaddr_storage {
    // SAFETY: an all-zero sockaddr_storage is valid, and KEY_SIZE bytes fit in it.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(
            key.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            KEY_SIZE,
        );
        storage
    }
}

/// An IPv4 or IPv6 address as the kernel reported it, and the tuple handed to the protocol.
struct Sender {
    addr: Py<PyAny>,
    key: Key,
    len: libc::socklen_t,
}

/// Whether an address of this family is remembered (IP addresses; Unix paths are not).
pub fn is_cached_family(storage: &libc::sockaddr_storage) -> bool {
    matches!(i32::from(storage.ss_family), libc::AF_INET | libc::AF_INET6)
}

#[derive(Default)]
pub struct Senders {
    slots: Vec<Sender>,
    /// The slot the next new sender replaces once all are used.
    next: usize,
}

impl Senders {
    /// The tuple made before for this kernel address, if it is remembered.
    pub fn tuple_for<'py>(
        &self,
        py: Python<'py>,
        storage: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> Option<Bound<'py, PyAny>> {
        let key = key(storage, len);
        self.slots
            .iter()
            .find(|sender| sender.len == len && sender.key == key)
            .map(|sender| sender.addr.bind(py).clone())
    }

    /// The kernel address of a tuple this cache handed out, found by identity.
    pub fn storage_for(
        &self,
        addr: &Bound<'_, PyAny>,
    ) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
        self.slots
            .iter()
            .find(|sender| sender.addr.is(addr))
            .map(|sender| (storage_of(&sender.key), sender.len))
    }

    /// Remembers a new sender, in place of the oldest once all slots are used. (The tuple it
    /// displaces, of a str and ints, runs no code when freed.)
    pub fn remember(
        &mut self,
        addr: Py<PyAny>,
        storage: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) {
        let sender = Sender {
            addr,
            key: key(storage, len),
            len,
        };
        if self.slots.len() < CAPACITY {
            self.slots.push(sender);
        } else {
            self.slots[self.next] = sender;
            self.next = (self.next + 1) % CAPACITY;
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.slots
            .iter()
            .try_for_each(|sender| visit.call(&sender.addr))
    }
}
