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

/// A final binary frame's header for `len` bytes of payload, with the mask bit if `masked`.
fn header(len: usize, masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut header = vec![0x82];
    match len {
        0..=125 => header.push(mask_bit | len as u8),
        126..=0xffff => {
            header.push(mask_bit | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(mask_bit | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header
}

/// The bytes a client sends for `payload` (a masked frame), and those the server's echo of it is.
pub fn echo_frames(payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut sent = header(payload.len(), true);
    sent.extend_from_slice(&mask);
    sent.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    let mut echoed = header(payload.len(), false);
    echoed.extend_from_slice(payload);
    (sent, echoed)
}

/// Closes the connection as the RFC asks: a close frame with code 1000, then the server's close
/// frame and its end of the stream, so the server sees a clean close rather than a lost peer.
pub fn close<S: Read + Write + ?Sized>(stream: &mut S) -> io::Result<()> {
    let (frame, _) = echo_frames(&1000u16.to_be_bytes());
    let mut frame = frame;
    frame[0] = 0x88;
    stream.write_all(&frame)?;
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
        assert_eq!(header(256, false), [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(header(65536, false)[..2], [0x82, 0x7f]);
    }
}
