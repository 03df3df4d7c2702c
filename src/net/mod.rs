//! Networking: the per-packet halves of the stream and datagram socket transports and of the read
//! pipe transport. The Python halves (`python/ferroloop/_transports.py`) hold what runs per
//! connection.

mod base;
mod byte_view;
mod calls;
mod connection_setup;
mod datagram;
mod pipe;
mod plain_socket;
mod read_batching;
mod read_bytes;
mod senders;
mod sock_first_try;
mod sockaddr;
mod stream;
mod sys;
mod transport_methods;

pub use calls::{is_exit, sort_python_error, Io, LOG_THRESHOLD_FOR_CONNLOST_WRITES, MAX_READ};
pub use connection_setup::{accept_connection, register_transport, set_nodelay, sockname_or_none};
pub use datagram::DatagramSocket;
pub use pipe::{pipe_read_ready_method, pipe_write_methods};
pub use sock_first_try::sock_try;
pub use stream::SocketStream;
pub use transport_methods::{datagram_sendto_method, is_closing_method, socket_transport_methods};
