//! ferroloop: Python's asyncio event loop, written in Rust.
//!
//! `core` is the Python-free engine (clock, ready queue, timer heap, poller, waker) with its own
//! tests; `handles`, `event_loop`, `net` and `tls` are the PyO3 layer that CPython sees.

// The poller drives epoll itself (level-triggered, as asyncio's selectors are; mio's registry is
// edge-triggered), datagrams are read with recvmmsg and pipes made with pipe2: all Linux's.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "ferroloop runs on Linux only: its poller is epoll, its datagram reads use recvmmsg; \
     on other systems, use asyncio's own loop"
);

mod context_vars;
pub mod core;
mod errors;
mod event_loop;
mod gil;
mod handles;
mod method_descriptor;
mod net;
mod packed_call;
mod pyobjects;
mod tls;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    core::fork::install();
    m.add_class::<event_loop::LoopCore>()?;
    event_loop::finish_type(&m.py().get_type::<event_loop::LoopCore>())?;
    m.add_function(wrap_pyfunction!(event_loop::_register_task_calls, m)?)?;
    m.add_function(wrap_pyfunction!(event_loop::close_exit_gate, m)?)?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<net::SocketStream>()?;
    m.add_class::<net::DatagramSocket>()?;
    m.add_function(wrap_pyfunction!(net::pipe_read_ready_method, m)?)?;
    m.add_function(wrap_pyfunction!(net::pipe_write_methods, m)?)?;
    m.add_function(wrap_pyfunction!(net::socket_transport_methods, m)?)?;
    m.add_function(wrap_pyfunction!(net::datagram_sendto_method, m)?)?;
    m.add_function(wrap_pyfunction!(net::is_closing_method, m)?)?;
    m.add_function(wrap_pyfunction!(net::accept_connection, m)?)?;
    m.add_function(wrap_pyfunction!(net::set_nodelay, m)?)?;
    m.add_function(wrap_pyfunction!(net::register_transport, m)?)?;
    m.add_function(wrap_pyfunction!(net::sockname_or_none, m)?)?;
    m.add_class::<tls::TlsProtocol>()?;
    m.add_function(wrap_pyfunction!(tls::tls_write_method, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
