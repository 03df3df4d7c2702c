//! Networking: the per-packet half of the stream socket transport. The Python half
//! (`python/ferroloop/_transports.py`) holds what runs per connection.

mod base;
mod byte_view;
mod calls;
mod stream;
mod sys;

pub use stream::SocketStream;
