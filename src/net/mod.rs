//! Networking: the per-packet halves of the stream and datagram socket transports. The Python
//! halves (`python/ferroloop/_transports.py`) hold what runs per connection.

mod base;
mod byte_view;
mod calls;
mod datagram;
mod sockaddr;
mod stream;
mod sys;

pub use datagram::DatagramSocket;
pub use stream::SocketStream;
