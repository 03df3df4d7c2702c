//! A WebSocket client's part, as little of RFC 6455 as an echo needs: the opening handshake, and
//! one binary frame each way per message (masked from the client, as the RFC requires; not from
//! the server). No extension is offered, so the server sends the payload as it got it.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Connects to `addr` and upgrades the connection to a WebSocket one.
pub fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    // The key is fixed: the server only hashes it into its answer, which is not checked here.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // Byte by byte up to the blank line, so that nothing after the head is read here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&head).into_owned();
        return Err(io::Error::other(format!("no WebSocket upgrade: {head}")));
    }
    Ok(stream)
}

/// First bytes of final frames: a binary message, a close.
const BINARY: u8 = 0x82;
const CLOSE: u8 = 0x88;
/// The client's masking key (any works; the RFC's examples use this one).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A final frame of `payload` starting with `first`, masked with `mask` if given.
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    let mut frame = vec![first];
    match len {
        0..=125 => frame.push(mask_bit | len as u8),
        126..=0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// The bytes a client sends for `payload` (a masked frame), and those the server's echo of it is.
pub fn echo_frames(payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        frame(BINARY, payload, Some(MASK)),
        frame(BINARY, payload, None),
    )
}

/// Closes the connection as the RFC asks: a close frame with code 1000, then the server's close
/// frame and its end of the stream, so the server sees a clean close rather than a lost peer.
pub fn close<S: Read + Write + ?Sized>(stream: &mut S) -> io::Result<()> {
    stream.write_all(&frame(CLOSE, &1000u16.to_be_bytes(), Some(MASK)))?;
    io::copy(stream, &mut io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_rfc_6455_section_5_7() {
        // The RFC's examples: "Hello" unmasked, and masked with 37 fa 21 3d (as text, 0x81).
        let (sent, echoed) = echo_frames(b"Hello");
        assert_eq!(echoed, [0x82, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(
            sent[1..],
            [0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(
            frame(BINARY, &[0; 256], None)[..4],
            [0x82, 0x7e, 0x01, 0x00]
        );
        assert_eq!(frame(BINARY, &[0; 65536], None)[..2], [0x82, 0x7f]);
        assert_eq!(frame(CLOSE, &[0x03, 0xe8], Some(MASK))[..2], [0x88, 0x82]);
    }
}
