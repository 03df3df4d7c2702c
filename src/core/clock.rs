//! `loop.time()`: the same clock and the same float as Python's `time.monotonic()`.

/// Seconds on CLOCK_MONOTONIC, converted exactly as CPython converts its nanosecond count to a float.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec; // both are i64 on 64-bit Linux
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::monotonic;

    #[test]
    fn never_goes_backwards() {
        let mut last = monotonic();
        for _ in 0..10_000 {
            let now = monotonic();
            assert!(now >= last);
            last = now;
        }
    }
}
