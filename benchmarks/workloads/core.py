"""The core-loop workloads: callbacks, timers, sleep(0), tasks, threads, synchronisation."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from .base import Workload


async def call_soon_chain(n: int) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = n

    def step():
        nonlocal left
        left -= 1
        if left:
            loop.call_soon(step)
        else:
            done.set_result(None)

    loop.call_soon(step)
    await done
    return n


async def call_soon_fanout(n: int) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    def hit():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    for _ in range(n):
        loop.call_soon(hit)
    await done
    return n


async def sleep0_chain(n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return n


async def call_later_cancel(n: int) -> int:
    loop = asyncio.get_running_loop()

    def never():
        raise AssertionError("a cancelled timer ran")

    for i in range(n):
        loop.call_later(10.0 + (i % 100), never).cancel()
        if i % 1000 == 999:
            await asyncio.sleep(0)
    return n


async def timeout_blocks(n: int) -> int:
    for _ in range(n):
        async with asyncio.timeout(10):
            await asyncio.sleep(0)
    return n


async def threadsafe_calls(n: int) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    threads = 4
    per_thread = n // threads
    total = per_thread * threads
    count = 0

    def hit():
        nonlocal count
        count += 1
        if count == total:
            done.set_result(None)

    def producer():
        for _ in range(per_thread):
            loop.call_soon_threadsafe(hit)

    workers = [threading.Thread(target=producer) for _ in range(threads)]
    for t in workers:
        t.start()
    await done
    for t in workers:
        t.join()
    return total


async def _child() -> None:
    await asyncio.sleep(0)


async def tasks_gather(n: int) -> int:
    tasks = [asyncio.create_task(_child()) for _ in range(n)]
    await asyncio.gather(*tasks)
    return n


async def coroutines_gather(n: int) -> int:
    await asyncio.gather(*(_child() for _ in range(n)))
    return n


async def taskgroup(n: int) -> int:
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(_child())
    return n


async def event_pingpong(n: int) -> int:
    ping, pong = asyncio.Event(), asyncio.Event()

    async def responder():
        for _ in range(n):
            await ping.wait()
            ping.clear()
            pong.set()

    task = asyncio.create_task(responder())
    for _ in range(n):
        ping.set()
        await pong.wait()
        pong.clear()
    await task
    return n


async def lock_pingpong(n: int) -> int:
    lock = asyncio.Lock()
    per_worker = n // 2

    async def worker():
        for _ in range(per_worker):
            async with lock:
                await asyncio.sleep(0)

    await asyncio.gather(worker(), worker())
    return per_worker * 2


@contextlib.asynccontextmanager
async def _held():
    yield


async def asynccontextmanager_blocks(n: int) -> int:
    # Each block is an async generator's first step on the loop: the loop's firstiter hook.
    for _ in range(n):
        async with _held():
            pass
    return n


async def pending_timers(n: int) -> int:
    loop = asyncio.get_running_loop()
    handles = [loop.call_later(3600, print) for _ in range(n)]
    await asyncio.sleep(0)
    for h in handles:
        h.cancel()
    return n


WORKLOADS = {
    "call_soon chain": Workload(call_soon_chain, 1_000_000, 100_000, "callback"),
    "call_soon fan-out": Workload(call_soon_fanout, 1_000_000, 100_000, "callback"),
    "sleep(0) chain": Workload(sleep0_chain, 500_000, 50_000, "await"),
    "call_later+cancel": Workload(call_later_cancel, 500_000, 50_000, "timer"),
    "asyncio.timeout()": Workload(timeout_blocks, 200_000, 25_000, "block"),
    "call_soon_threadsafe x4 threads": Workload(threadsafe_calls, 400_000, 50_000, "callback"),
    "create_task x100k + gather": Workload(tasks_gather, 100_000, 100_000, "task"),
    "coroutines x100k + gather": Workload(coroutines_gather, 100_000, 100_000, "task"),
    "TaskGroup x100k": Workload(taskgroup, 100_000, 100_000, "task"),
    "Event ping-pong": Workload(event_pingpong, 200_000, 25_000, "round trip"),
    "Lock ping-pong": Workload(lock_pingpong, 200_000, 25_000, "acquire"),
    "asynccontextmanager": Workload(asynccontextmanager_blocks, 500_000, 50_000, "block"),
    "1M pending timers (memory)": Workload(
        pending_timers, 1_000_000, 1_000_000, "timer", metric="memory"
    ),
}
