//! The native half of ferroloop's datagram transport (UDP, and Unix datagram sockets).
//!
//! `ferroloop._transports.DatagramTransport` is what protocols see; its `DatagramSocket` receives
//! each datagram into the thread's read buffer and hands `datagram_received` a bytes object and
//! the sender's address, and sends at once, queueing only what the socket refused. Each step
//! follows CPython 3.11's `selector_events._SelectorDatagramTransport`: OS errors go to
//! `error_received`, other errors are fatal, with asyncio's messages.

use std::collections::VecDeque;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{intern, PyTraverseError, PyVisit};

use super::base::{shared_transport_methods, NativeTransport, TransportBase};
use super::byte_view::{check_bytes_like, ByteView, DataCheck};
use super::calls::{socket_call, sort_python_error, with_read_buffer, Io};
use super::read_batching::ReadBatching;
use super::senders::{self, Senders};
use super::{read_bytes, sockaddr, sys};
use crate::event_loop::LoopCore;
use crate::gil::GilCell;

/// From Python 3.13 a queued datagram counts this much on top of its payload (its UDP header).
const HEADER_SIZE_SINCE_3_13: usize = 8;

/// The room each datagram of a batched read gets: enough for any IPv4 or IPv6 datagram (65,507
/// and 65,527 bytes of payload at most). (Datagrams merged for a socket given `UDP_GRO` by hand
/// stay within 64 KiB unless the device's `gro_max_size` was raised; asyncio's transports could
/// not tell their parts apart anyway.)
const IP_DATAGRAM_ROOM: usize = 64 * 1024;

/// A datagram read ahead of its turn, and its sender as the kernel reported it.
struct Held {
    data: Py<PyBytes>,
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
}

/// A datagram just received: its bytes and its sender.
type Received<'py> = (Bound<'py, PyBytes>, libc::sockaddr_storage, libc::socklen_t);

struct Queued {
    data: Py<PyBytes>,
    addr: Option<Py<PyAny>>,
}

struct DatagramState {
    buffer: VecDeque<Queued>,
    /// asyncio's `_buffer_size`: what `get_write_buffer_size()` reports.
    buffer_size: usize,
    /// The addresses of the last few senders, as handed to `datagram_received` and in their
    /// kernel form.
    senders: Senders,
    /// Datagrams a batched read took from the kernel after the one it handed over, oldest first.
    held: VecDeque<Held>,
    /// Whether the next read is a batch.
    batching: ReadBatching,
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct DatagramSocket {
    base: TransportBase,
    /// The Python socket: it converts the addresses the native code leaves to it.
    sock: Py<PyAny>,
    family: i32,
    /// IPv4 and IPv6 sockets read in batches (no datagram there exceeds `IP_DATAGRAM_ROOM`).
    batched: bool,
    /// The `remote_addr` the endpoint was made with: every datagram goes there.
    address: Option<Py<PyAny>>,
    /// The socket is connected (`get_extra_info('peername')` is set): datagrams go by `send`.
    connected: bool,
    /// Whether empty datagrams are sent (Python 3.13+) and what a queued one counts for.
    sends_empty: bool,
    header_size: usize,
    state: GilCell<DatagramState>,
}

impl NativeTransport for DatagramSocket {
    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn buffered_size(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).buffer_size
    }

    fn clear_buffer(&self, py: Python<'_>) -> bool {
        let mut st = self.state.borrow_mut(py);
        let had = !st.buffer.is_empty();
        st.buffer.clear();
        st.buffer_size = 0;
        had
    }
}

shared_transport_methods!(DatagramSocket);

impl DatagramSocket {
    /// One datagram to `addr` (or to the connected peer).
    fn send_one(&self, py: Python<'_>, data: &[u8], addr: Option<&Bound<'_, PyAny>>) -> Io<usize> {
        let fd = self.base.fd;
        if self.connected {
            return socket_call(py, || sys::send(fd, data));
        }
        let addr = match addr {
            Some(addr) => addr.clone(),
            None => py.None().into_bound(py),
        };
        let known = self.state.borrow(py).senders.storage_for(&addr);
        match known.or_else(|| sockaddr::from_python(self.family, &addr)) {
            Some((storage, len)) => socket_call(py, || sys::send_to(fd, data, &storage, len)),
            None => sort_python_error(
                py,
                self.sock
                    .bind(py)
                    .call_method1(intern!(py, "sendto"), (PyBytes::new(py, data), addr))
                    .and_then(|n| n.extract::<usize>()),
            ),
        }
    }

    /// The address tuple of a datagram's sender: the one made before for a sender remembered,
    /// else a new one, remembered if it is an IP address.
    fn sender_tuple<'py>(
        &self,
        py: Python<'py>,
        storage: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(addr) = self.state.borrow(py).senders.tuple_for(py, storage, len) {
            return Ok(addr);
        }
        let addr = sockaddr::to_python(py, storage, len)?;
        if senders::is_cached_family(storage) {
            let mut st = self.state.borrow_mut(py);
            st.senders.remember(addr.clone().unbind(), storage, len);
        }
        Ok(addr)
    }

    /// The oldest datagram held from a batch, if any; the last one ends the hold.
    fn take_held<'py>(&self, py: Python<'py>) -> Option<Received<'py>> {
        let mut st = self.state.borrow_mut(py);
        let held = st.held.pop_front()?;
        if st.held.is_empty() {
            self.base.release_readable(py);
        }
        Some((held.data.into_bound(py), held.addr, held.addr_len))
    }

    /// One datagram, by `recvfrom` into the thread's read buffer (asyncio's `max_size`, which a
    /// Unix datagram may need whole).
    fn receive_one<'py>(&self, py: Python<'py>) -> Io<Received<'py>> {
        let fd = self.base.fd;
        socket_call(py, || {
            with_read_buffer(|buf| {
                sys::recv_from(fd, buf)
                    .map(|(n, addr, len)| (read_bytes::bytes_of(py, &buf[..n]), addr, len))
            })
        })
    }

    /// The datagrams queued, by one `recvmmsg` into the thread's read buffer: the first is
    /// returned, the others held for the next turns.
    fn receive_batch<'py>(&self, py: Python<'py>) -> Io<Received<'py>> {
        let fd = self.base.fd;
        with_read_buffer(|buf| {
            let batch = match socket_call(py, || sys::recv_many(fd, buf, IP_DATAGRAM_ROOM)) {
                Io::Done(batch) => batch,
                Io::WouldBlock => return Io::WouldBlock,
                Io::Failed(err) => return Io::Failed(err),
            };
            let datagram = |n: usize| {
                let (len, addr, addr_len) = batch.get(n);
                let start = n * IP_DATAGRAM_ROOM;
                (&buf[start..start + len], *addr, addr_len)
            };
            let mut st = self.state.borrow_mut(py);
            st.batching.batch_found(batch.len(), batch.room());
            if batch.len() > 1 {
                st.held.extend((1..batch.len()).map(|n| {
                    let (data, addr, addr_len) = datagram(n);
                    Held {
                        data: PyBytes::new(py, data).unbind(),
                        addr,
                        addr_len,
                    }
                }));
                self.base.hold_readable(py);
            }
            drop(st);
            let (data, addr, addr_len) = datagram(0);
            Io::Done((read_bytes::bytes_of(py, data), addr, addr_len))
        })
    }

    /// An OS error goes to `protocol.error_received`; exits propagate; the rest is fatal.
    fn send_failed(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        if err.is_instance_of::<PyOSError>(py) {
            if let Some(protocol) = self.base.protocol(py) {
                protocol.call_method1(intern!(py, "error_received"), (err.into_value(py),))?;
            }
            return Ok(());
        }
        self.base
            .fatal_error(py, err, "Fatal write error on datagram transport")
    }

    /// `sendto(data, addr=None)`, for `DatagramTransport.sendto` (see `transport_methods`).
    pub(crate) fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        check_bytes_like(data, DataCheck::DatagramSendto)?;
        let view = ByteView::readable(data)?;
        let bytes = view.as_slice();
        if bytes.is_empty() && !this.sends_empty {
            return Ok(());
        }
        let mut addr = addr;
        if let Some(address) = &this.address {
            let address = address.bind(py);
            if let Some(given) = &addr {
                if !given.eq(address)? {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        address.str()?
                    )));
                }
            }
            addr = Some(address.clone());
            if this.base.drop_write_after_loss(py)? {
                return Ok(());
            }
        }
        if this.state.borrow(py).buffer.is_empty() {
            match this.send_one(py, bytes, addr.as_ref()) {
                Io::Done(_) => return Ok(()),
                Io::WouldBlock => {
                    this.base
                        .start_watching(slf.as_any(), intern!(py, "_sendto_ready"), false)?;
                }
                Io::Failed(err) => return this.send_failed(py, err),
            }
        }
        {
            // What is queued must not change under us: a bytes copy, as asyncio makes.
            let mut st = this.state.borrow_mut(py);
            st.buffer.push_back(Queued {
                data: PyBytes::new(py, bytes).unbind(),
                addr: addr.map(Bound::unbind),
            });
            st.buffer_size += bytes.len() + this.header_size;
        }
        this.base.maybe_pause(py, this.buffered_size(py))
    }
}

#[pymethods]
impl DatagramSocket {
    #[new]
    #[pyo3(signature = (loop_, transport, sock, protocol, address, connected))]
    fn py_new(
        loop_: &Bound<'_, LoopCore>,
        transport: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        address: Option<Bound<'_, PyAny>>,
        connected: bool,
    ) -> PyResult<Self> {
        let py = sock.py();
        let fd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let family = sock.getattr(intern!(py, "family"))?.extract()?;
        let since_3_13 = py.version_info() >= (3, 13);
        Ok(DatagramSocket {
            base: TransportBase::new(loop_, transport, fd, protocol),
            sock: sock.clone().unbind(),
            family,
            batched: family == libc::AF_INET || family == libc::AF_INET6,
            address: address.map(Bound::unbind),
            connected,
            sends_empty: since_3_13,
            header_size: if since_3_13 {
                HEADER_SIZE_SINCE_3_13
            } else {
                0
            },
            state: GilCell::new(DatagramState {
                buffer: VecDeque::new(),
                buffer_size: 0,
                senders: Senders::default(),
                held: VecDeque::new(),
                batching: ReadBatching::default(),
            }),
        })
    }

    /// The reader callback: one datagram per call, as asyncio reads one per readiness event.
    ///
    /// An IP socket takes all the datagrams queued (up to a batch) in one `recvmmsg`, hands the
    /// first over and holds the rest, one per later turn, its reader queued in each of those
    /// turns as if the kernel still held them (`TransportBase::hold_readable`). Callbacks run in
    /// asyncio's order; what is saved is a `recvfrom` per datagram.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        if self.base.conn_lost(py) {
            return Ok(());
        }
        let received = match self.take_held(py) {
            Some(held) => Io::Done(held),
            None if self.batched && self.state.borrow_mut(py).batching.batch_due() => {
                self.receive_batch(py)
            }
            None => self.receive_one(py),
        };
        let Some(protocol) = self.base.protocol(py) else {
            return Ok(());
        };
        match received {
            Io::WouldBlock => Ok(()),
            Io::Failed(err) if err.is_instance_of::<PyOSError>(py) => {
                protocol.call_method1(intern!(py, "error_received"), (err.into_value(py),))?;
                Ok(())
            }
            Io::Failed(err) => {
                self.base
                    .fatal_error(py, err, "Fatal read error on datagram transport")
            }
            Io::Done((data, storage, len)) => {
                let addr = self.sender_tuple(py, &storage, len)?;
                read_bytes::hand_over(data, |data| {
                    protocol.call_method1(intern!(py, "datagram_received"), (data, addr))
                })
                .map(drop)
            }
        }
    }

    /// The writer callback (`_sendto_ready`): sends the queue until the socket refuses.
    fn _sendto_ready(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let Some(item) = ({
                let mut st = self.state.borrow_mut(py);
                let item = st.buffer.pop_front();
                if let Some(item) = &item {
                    st.buffer_size -= item.data.bind(py).as_bytes().len() + self.header_size;
                }
                item
            }) else {
                break;
            };
            let data = item.data.bind(py);
            let addr = item.addr.as_ref().map(|a| a.bind(py).clone());
            match self.send_one(py, data.as_bytes(), addr.as_ref()) {
                Io::Done(_) => {}
                Io::WouldBlock => {
                    let mut st = self.state.borrow_mut(py);
                    st.buffer_size += data.as_bytes().len() + self.header_size;
                    st.buffer.push_front(item);
                    break;
                }
                Io::Failed(err) => return self.send_failed(py, err),
            }
        }
        self.base.maybe_resume(py, self.buffered_size(py))?; // The protocol may send more here.
        if self.state.borrow(py).buffer.is_empty() {
            self.base.stop_watching(py, false)?;
            if self.base.is_closing(py) {
                self.base.call_connection_lost(py)?;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        visit.call(&self.sock)?;
        if let Some(address) = &self.address {
            visit.call(address)?;
        }
        if let Some(st) = self.state.try_borrow_for_gc() {
            st.senders.traverse(&visit)?;
            for item in &st.buffer {
                visit.call(&item.data)?;
                if let Some(addr) = &item.addr {
                    visit.call(addr)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        self.clear_buffer(py);
    }
}
