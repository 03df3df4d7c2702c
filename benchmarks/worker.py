"""Runs one workload once on one loop in this fresh process and prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Each loop's factory, and the module its loop class must come from: a silent fallback to the
# stdlib loop would make a peer look like asyncio, so the loop that ran is checked.
LOOPS = {
    "asyncio": ("asyncio", "SelectorEventLoop", "asyncio."),
    "uvloop": ("uvloop", "new_event_loop", "uvloop"),
    "rloop": ("rloop", "new_event_loop", "rloop"),
    "ferroloop": ("ferroloop", "new_event_loop", "ferroloop"),
}


def make_loop(name: str) -> asyncio.AbstractEventLoop:
    module, factory, expected_prefix = LOOPS[name]
    loop = getattr(importlib.import_module(module), factory)()
    actual = type(loop).__module__
    if not actual.startswith(expected_prefix.rstrip(".")):
        raise SystemExit(f"asked for {name} but got a loop from {actual}")
    return loop


def current_rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def find_workload(name: str):
    from workloads import ALL

    return ALL[name]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", required=True, choices=sorted(LOOPS))
    parser.add_argument("--workload", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--placement", help="pin the server and its clients (placement.py)")
    args = parser.parse_args()

    workload = find_workload(args.workload)
    if args.placement:
        from workloads import placement

        placement.pin(args.placement)
    loop = make_loop(args.loop)
    result = {}

    async def timed():
        gc.collect()
        baseline = current_rss_kib()
        use0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        done = await workload.body(args.size)
        t1, use1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        ops, seconds = done if isinstance(done, tuple) else (done, t1 - t0)
        user = use1.ru_utime - use0.ru_utime
        result.update(
            seconds=seconds,
            cpu_seconds=user + use1.ru_stime - use0.ru_stime,
            # The total is exact; the split is a sample where the kernel accounts by ticks
            # (CONFIG_TICK_CPU_ACCOUNTING): at HZ=250 a user part of 0.1 s rests on 25 ticks.
            user_seconds=user,
            ops=ops,
            extra_mib=max(0, use1.ru_maxrss - baseline) / 1024,
        )

    try:
        loop.run_until_complete(timed())
    finally:
        loop.close()
    result.update(
        loop=args.loop,
        loop_type=f"{type(loop).__module__}.{type(loop).__qualname__}",
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
