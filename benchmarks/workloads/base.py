"""What a workload is: a coroutine factory timed inside the loop, and its size in each mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass(frozen=True)
class Workload:
    # Runs the measured part inside a running loop and returns how many operations it did, or
    # (operations, seconds) when it times its measured window itself (a load client's own clock).
    body: Callable[[int], Awaitable[int | tuple[int, float]]]
    size: int
    quick_size: int
    unit: str = "op"
    # The size `make test`'s smoke run uses, to keep the workload from rotting (not a measurement).
    smoke_size: int = 1000
    # "time" (ops per second, higher is better) or "memory" (MiB, lower is better).
    metric: str = "time"
    # Loops that lack the feature the workload needs, with the reason.
    unsupported: dict[str, str] | None = None
    # The same load against the pure-Rust mio echo server: the ceiling, in operations per second,
    # given the size and the placement (see placement.py; None: unpinned).
    ceiling: Callable[[int, str | None], float] | None = None
    # The load comes from a client process of its own: measured in each of placement.PLACEMENTS.
    placed: bool = False
