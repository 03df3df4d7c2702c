//! The timer heap: due order is deadline first, then insertion order.
//!
//! Cancelled timers stay in the heap until they reach its head or until they make up more than half of
//! a heap of more than 100 entries, when the heap is rebuilt without them. These are asyncio's own
//! thresholds (`_MIN_SCHEDULED_TIMER_HANDLES`, `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`), so that a
//! program that arms and cancels many timeouts keeps a heap of the same size on either loop.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Entry;

const MIN_SCHEDULED_FOR_COMPACTION: usize = 100;
const MAX_CANCELLED_FRACTION: f64 = 0.5;

struct Timer<T> {
    when: f64,
    seq: u64,
    entry: T,
}

impl<T> Timer<T> {
    // BinaryHeap is a max-heap: the earliest (when, seq) must compare greatest.
    fn key_cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<T> PartialEq for Timer<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key_cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Timer<T> {}
impl<T> PartialOrd for Timer<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timer<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_cmp(other)
    }
}

pub struct TimerHeap<T> {
    heap: BinaryHeap<Timer<T>>,
    next_seq: u64,
    cancelled: usize,
}

impl<T: Entry> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Entry> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
            cancelled: 0,
        }
    }

    /// Schedules `entry` at `when`; `when` is never NaN (the caller rejects it).
    pub fn push(&mut self, when: f64, entry: T) {
        debug_assert!(!when.is_nan());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Timer { when, seq, entry });
    }

    /// Counts one more cancelled timer still in the heap (asyncio's `_timer_handle_cancelled`).
    pub fn note_cancelled(&mut self) {
        self.cancelled += 1;
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn cancelled_count(&self) -> usize {
        self.cancelled
    }

    /// Drops cancelled timers: all of them when they are most of a large heap, else those at its head.
    pub fn prune(&mut self) {
        let len = self.heap.len();
        if len > MIN_SCHEDULED_FOR_COMPACTION
            && self.cancelled as f64 / len as f64 > MAX_CANCELLED_FRACTION
        {
            let mut live = std::mem::take(&mut self.heap).into_vec();
            live.retain(|t| {
                let keep = !t.entry.is_cancelled();
                if !keep {
                    t.entry.set_unscheduled();
                }
                keep
            });
            self.heap = BinaryHeap::from(live);
            self.cancelled = 0;
        } else {
            while self.heap.peek().is_some_and(|t| t.entry.is_cancelled()) {
                let t = self.heap.pop().expect("peeked");
                t.entry.set_unscheduled();
                self.cancelled = self.cancelled.saturating_sub(1);
            }
        }
    }

    /// The earliest deadline, cancelled or not.
    pub fn next_deadline(&self) -> Option<f64> {
        self.heap.peek().map(|t| t.when)
    }

    /// Pops the earliest timer if its deadline is before `end_time`.
    pub fn pop_due(&mut self, end_time: f64) -> Option<T> {
        if self.heap.peek()?.when >= end_time {
            return None;
        }
        let t = self.heap.pop().expect("peeked");
        t.entry.set_unscheduled();
        if t.entry.is_cancelled() {
            self.cancelled = self.cancelled.saturating_sub(1);
        }
        Some(t.entry)
    }

    /// Every timer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|t| &t.entry)
    }

    /// Removes every timer, earliest first (used when the loop is closed).
    pub fn drain(&mut self) -> Vec<T> {
        self.cancelled = 0;
        let mut all = std::mem::take(&mut self.heap).into_sorted_vec();
        all.reverse();
        all.into_iter()
            .map(|t| {
                t.entry.set_unscheduled();
                t.entry
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Clone)]
    struct Probe {
        id: u32,
        cancelled: Rc<Cell<bool>>,
        scheduled: Rc<Cell<bool>>,
    }

    impl Probe {
        fn new(id: u32) -> Self {
            Probe {
                id,
                cancelled: Rc::new(Cell::new(false)),
                scheduled: Rc::new(Cell::new(true)),
            }
        }
    }

    impl Entry for Probe {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
        fn set_unscheduled(&self) {
            self.scheduled.set(false);
        }
    }

    fn due_ids(heap: &mut TimerHeap<Probe>, end: f64) -> Vec<u32> {
        std::iter::from_fn(|| heap.pop_due(end))
            .map(|p| p.id)
            .collect()
    }

    #[test]
    fn deadline_then_insertion_order() {
        let mut heap = TimerHeap::new();
        for (id, when) in [(0, 3.0), (1, 1.0), (2, 2.0), (3, 1.0), (4, -5.0), (5, 1.0)] {
            heap.push(when, Probe::new(id));
        }
        assert_eq!(due_ids(&mut heap, 10.0), vec![4, 1, 3, 5, 2, 0]);
    }

    #[test]
    fn only_timers_before_end_time_are_due() {
        let mut heap = TimerHeap::new();
        heap.push(1.0, Probe::new(0));
        heap.push(2.0, Probe::new(1));
        heap.push(f64::INFINITY, Probe::new(2));
        assert_eq!(due_ids(&mut heap, 2.0), vec![0]);
        assert_eq!(heap.next_deadline(), Some(2.0));
        assert_eq!(due_ids(&mut heap, f64::MAX), vec![1]);
        assert_eq!(heap.len(), 1);
    }

    #[test]
    fn cancelled_heads_are_pruned() {
        let mut heap = TimerHeap::new();
        let probes: Vec<Probe> = (0..5).map(Probe::new).collect();
        for (i, p) in probes.iter().enumerate() {
            heap.push(i as f64, p.clone());
        }
        for p in &probes[..2] {
            p.cancelled.set(true);
            heap.note_cancelled();
        }
        probes[3].cancelled.set(true);
        heap.note_cancelled();
        heap.prune();
        assert_eq!(heap.len(), 3);
        assert_eq!(heap.cancelled_count(), 1);
        assert!(!probes[0].scheduled.get() && !probes[1].scheduled.get());
        assert!(probes[3].scheduled.get());
        assert_eq!(heap.next_deadline(), Some(2.0));
    }

    #[test]
    fn compaction_when_most_timers_are_cancelled() {
        let mut heap = TimerHeap::new();
        let probes: Vec<Probe> = (0..1000).map(Probe::new).collect();
        for (i, p) in probes.iter().enumerate() {
            heap.push(1000.0 - i as f64, p.clone());
        }
        // Cancel all but every tenth timer; the earliest (highest id) stays live so that
        // head pruning alone could not shrink the heap.
        for p in probes.iter().filter(|p| p.id % 10 != 9) {
            p.cancelled.set(true);
            heap.note_cancelled();
        }
        heap.prune();
        assert_eq!(heap.len(), 100);
        assert_eq!(heap.cancelled_count(), 0);
        let order = due_ids(&mut heap, f64::INFINITY);
        let expected: Vec<u32> = (0..1000).rev().filter(|id| id % 10 == 9).collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn small_heaps_are_not_compacted() {
        let mut heap = TimerHeap::new();
        let probes: Vec<Probe> = (0..50).map(Probe::new).collect();
        for p in &probes {
            heap.push(1.0, p.clone());
        }
        for p in &probes[1..] {
            p.cancelled.set(true);
            heap.note_cancelled();
        }
        heap.prune();
        assert_eq!(heap.len(), 50);
    }

    #[test]
    fn infinite_and_negative_deadlines_keep_order() {
        let mut heap = TimerHeap::new();
        heap.push(f64::INFINITY, Probe::new(0));
        heap.push(-1e300, Probe::new(1));
        heap.push(f64::NEG_INFINITY, Probe::new(2));
        heap.push(0.0, Probe::new(3));
        assert_eq!(due_ids(&mut heap, 1.0), vec![2, 1, 3]);
    }

    #[test]
    fn drain_returns_everything_in_order() {
        let mut heap = TimerHeap::new();
        heap.push(2.0, Probe::new(0));
        heap.push(1.0, Probe::new(1));
        let drained: Vec<u32> = heap.drain().into_iter().map(|p| p.id).collect();
        assert_eq!(drained, vec![1, 0]);
        assert!(heap.is_empty());
    }
}
