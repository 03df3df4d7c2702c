//! When a datagram socket's read takes a batch (`recvmmsg`) rather than one datagram (`recvfrom`).
//!
//! A batch pays when datagrams queue up between reads: a server sharing one core with its four
//! clients found a full batch (4 of 4) on every read of the UDP ping-pong benchmark. It costs
//! when they do not: a `recvmmsg` that finds one datagram cost 1,095 ns per send and receive
//! against `recvfrom`'s 920 (loopback, one core, one datagram queued each time), and on two
//! cores, where datagrams trickle in, batches took 1.19 datagrams on average, and a batch every
//! eighth read lost 2-4% of the throughput (10 to 16 alternating runs). So a batch that finds one is followed by single reads, more after
//! each such batch (4, doubling to 1,024); a full batch, the sign of a backlog, brings the count
//! back to 4. A batch of two or more that is not full leaves it alone.

const FEWEST_SINGLE_READS: u32 = 4;
const MOST_SINGLE_READS: u32 = 1024;

pub struct ReadBatching {
    /// Single reads left before the next batch.
    single_reads_left: u32,
    /// How many single reads the next batch that finds one datagram will be followed by.
    after_lone_batch: u32,
}

impl Default for ReadBatching {
    /// The first read is a batch.
    fn default() -> Self {
        ReadBatching {
            single_reads_left: 0,
            after_lone_batch: FEWEST_SINGLE_READS,
        }
    }
}

impl ReadBatching {
    /// Whether the next read takes a batch; counts a single read if not.
    pub fn batch_due(&mut self) -> bool {
        if self.single_reads_left == 0 {
            return true;
        }
        self.single_reads_left -= 1;
        false
    }

    /// A batch with room for `room` datagrams took `count` (at least one).
    pub fn batch_found(&mut self, count: usize, room: usize) {
        if count == 1 {
            self.single_reads_left = self.after_lone_batch;
            self.after_lone_batch = (self.after_lone_batch * 2).min(MOST_SINGLE_READS);
        } else if count == room {
            self.after_lone_batch = FEWEST_SINGLE_READS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many single reads come before the next batch.
    fn singles_before_batch(batching: &mut ReadBatching) -> u32 {
        let mut singles = 0;
        while !batching.batch_due() {
            singles += 1;
        }
        singles
    }

    #[test]
    fn batches_go_on_while_they_find_more_than_one() {
        let mut batching = ReadBatching::default();
        for count in [4, 2, 3, 4] {
            assert!(batching.batch_due());
            batching.batch_found(count, 4);
        }
        assert!(batching.batch_due());
    }

    #[test]
    fn lone_batches_space_out_the_batches_up_to_a_limit() {
        let mut batching = ReadBatching::default();
        let mut gaps = Vec::new();
        for _ in 0..12 {
            gaps.push(singles_before_batch(&mut batching));
            batching.batch_found(1, 4);
        }
        assert_eq!(gaps, [0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]);
    }

    #[test]
    fn a_full_batch_brings_batches_back_and_a_partial_one_does_not() {
        let mut batching = ReadBatching::default();
        for _ in 0..4 {
            singles_before_batch(&mut batching);
            batching.batch_found(1, 4);
        }
        singles_before_batch(&mut batching);
        batching.batch_found(3, 4);
        assert_eq!(singles_before_batch(&mut batching), 0);
        batching.batch_found(1, 4);
        assert_eq!(
            singles_before_batch(&mut batching),
            64,
            "not reset by a partial batch"
        );
        batching.batch_found(4, 4);
        assert_eq!(singles_before_batch(&mut batching), 0);
        batching.batch_found(1, 4);
        assert_eq!(
            singles_before_batch(&mut batching),
            4,
            "reset by a full one"
        );
    }
}
