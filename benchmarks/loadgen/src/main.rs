//! Load clients for ferroloop's benchmarks, the same binaries for every loop, plus the pure-Rust
//! echo server that is the ceiling of the echo rows. Each client prints one JSON line.
//!
//!   ferroloop-loadgen tcp|unix|tls|ws ADDR CONNS SIZE SECONDS
//!                                                        echo round trips, one thread per connection
//!                                                        (ws: SIZE-byte binary WebSocket messages)
//!   ferroloop-loadgen udp HOST:PORT CONNS SIZE SECONDS   datagram ping-pong, one thread per socket
//!   ferroloop-loadgen connect HOST:PORT CONNS SIZE SECONDS
//!                                                        a new connection per echo round trip, closed
//!                                                        by the client; CONNS threads
//!   ferroloop-loadgen bulk HOST:PORT MIB                 MIB MiB sent and read back on one connection
//!   ferroloop-loadgen serve HOST:PORT                    mio echo server; prints its port, runs until killed

mod clients;
// The echo server waits for events as ferroloop's poller does, so that it stays the ceiling.
#[path = "../../../src/core/idle_spin.rs"]
mod idle_spin;
mod server;
mod tls;
mod ws;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tcp" | "unix" | "tls" | "ws") if args.len() == 5 => clients::echo(&args),
        Some("udp") if args.len() == 5 => clients::udp(&args),
        Some("connect") if args.len() == 5 => clients::connect_each(&args),
        Some("bulk") if args.len() == 3 => clients::bulk(&args),
        Some("serve") if args.len() == 2 => server::serve(&args[1]),
        _ => {
            eprintln!("usage: see the header of benchmarks/loadgen/src/main.rs");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
