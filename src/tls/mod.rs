//! TLS: CPython 3.11's `asyncio.sslproto`, natively, around Python's own `ssl.SSLObject`.
//! The Python face is `python/ferroloop/_tls.py`.

mod app_write;
mod attributes;
mod flow;
mod handshake;
mod protocol;
mod records;
mod states;
mod stream_events;

pub use app_write::tls_write_method;
pub use protocol::TlsProtocol;
