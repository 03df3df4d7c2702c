//! The bytes a stream transport accepted but the socket did not take yet.
//!
//! One contiguous region, so that a flush is a single `send`. Sent bytes are dropped by moving a
//! head offset; the region is compacted only when the dead head outgrows the live bytes, so a
//! buffer drained by many partial sends costs amortised O(1) per byte.

#[derive(Default)]
pub struct WriteBuffer {
    bytes: Vec<u8>,
    head: usize,
}

impl WriteBuffer {
    pub fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unsent bytes, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.head..]
    }

    pub fn extend(&mut self, data: &[u8]) {
        if self.head > 0 && self.head >= self.len() {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Forgets the first `n` unsent bytes (the socket took them).
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consumed more than the buffer holds");
        self.head += n;
        if self.head == self.bytes.len() {
            self.clear();
        }
    }

    /// Drops everything; a large allocation is given back rather than kept per connection.
    pub fn clear(&mut self) {
        const KEEP: usize = 64 * 1024;
        self.bytes.clear();
        self.head = 0;
        if self.bytes.capacity() > KEEP {
            self.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WriteBuffer;

    #[test]
    fn keeps_order_across_partial_sends() {
        let mut buf = WriteBuffer::default();
        buf.extend(b"hello ");
        buf.consume(2);
        buf.extend(b"world");
        assert_eq!(buf.as_slice(), b"llo world");
        buf.consume(4);
        assert_eq!(buf.as_slice(), b"world");
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn empties_when_everything_is_sent() {
        let mut buf = WriteBuffer::default();
        buf.extend(&[7u8; 100_000]);
        buf.consume(100_000);
        assert!(buf.is_empty());
        assert_eq!(buf.as_slice(), b"");
        assert_eq!(
            buf.bytes.capacity(),
            0,
            "a large drained buffer is released"
        );
    }

    #[test]
    fn compacts_a_dead_head_once_it_outgrows_the_live_bytes() {
        let mut buf = WriteBuffer::default();
        buf.extend(&[1u8; 1000]);
        buf.consume(900);
        buf.extend(&[2u8; 10]);
        assert_eq!(buf.head, 0, "the 900 sent bytes were dropped");
        assert_eq!(buf.len(), 110);
        assert_eq!(&buf.as_slice()[..100], &[1u8; 100][..]);
        assert_eq!(&buf.as_slice()[100..], &[2u8; 10][..]);
    }

    #[test]
    #[should_panic(expected = "consumed more than the buffer holds")]
    fn refuses_to_consume_more_than_it_holds() {
        let mut buf = WriteBuffer::default();
        buf.extend(b"abc");
        buf.consume(4);
    }
}
