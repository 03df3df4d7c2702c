"""Subprocess workloads: spawning many short children, and streaming data through `cat`."""

from __future__ import annotations

import asyncio

from .base import Workload


async def spawn_true(n: int) -> int:
    procs = [await asyncio.create_subprocess_exec("true") for _ in range(n)]
    codes = await asyncio.gather(*(p.wait() for p in procs))
    assert codes == [0] * n
    return n


async def through_cat(mib: int) -> int:
    data = b"x" * (1024 * 1024)
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )

    async def feed():
        for _ in range(mib):
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()

    async def drain():
        total = 0
        while chunk := await proc.stdout.read(1 << 20):
            total += len(chunk)
        return total

    _, total = await asyncio.gather(feed(), drain())
    await proc.wait()
    assert total == mib * len(data)
    return mib


WORKLOADS = {
    "spawn 250 true": Workload(spawn_true, 250, 250, "process", smoke_size=5),
    "4 MiB through cat": Workload(through_cat, 4, 4, "MiB", smoke_size=1),
}
