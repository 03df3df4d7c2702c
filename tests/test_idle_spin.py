"""Waiting for events: ferroloop polls for a while before it blocks when recent waits were short
(src/core/idle_spin.rs). What a program sees must not change: every event in order, timers not
early, and an idle loop that takes no CPU."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

# asyncio runs a timer once loop.time() + the clock's resolution has passed its deadline.
CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


async def _ping_pong(round_trips: int) -> list[int]:
    """Sends numbers to a thread that echoes them, one at a time: waits of microseconds, which
    open the spin window. Returns what came back."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    received = asyncio.Queue()
    loop.add_reader(ours, lambda: received.put_nowait(ours.recv(16)))

    def echo():
        for _ in range(round_trips):
            theirs.sendall(theirs.recv(16))

    peer = threading.Thread(target=echo)
    peer.start()
    got = []
    try:
        for i in range(round_trips):
            ours.send(i.to_bytes(2, "big"))
            got.append(int.from_bytes(await received.get(), "big"))
    finally:
        peer.join()
        loop.remove_reader(ours)
        ours.close()
        theirs.close()
    return got


def test_after_a_burst_of_short_waits_every_event_arrives_and_an_idle_loop_takes_no_cpu(loop):
    async def main():
        got = await _ping_pong(3000)
        cpu, start = time.thread_time(), loop.time()
        await asyncio.sleep(0.5)
        return got, time.thread_time() - cpu, loop.time() - start

    got, idle_cpu, slept = loop.run_until_complete(main())
    assert got == list(range(3000))
    assert slept >= 0.5
    # A loop spinning through the sleep would use about 0.5 s of CPU; blocking, well under 1 ms.
    assert idle_cpu < 0.05, idle_cpu


def test_after_a_burst_of_short_waits_timers_fire_when_due_not_before(loop):
    async def main():
        late = []
        for delay in (0.00001, 0.00002, 0.0001, 0.001):
            await _ping_pong(300)
            when = loop.time() + delay
            fired = loop.create_future()
            loop.call_at(when, lambda f=fired: f.set_result(loop.time()))
            late.append(await fired - when)
        return late

    assert all(lateness > -CLOCK_RESOLUTION for lateness in loop.run_until_complete(main()))
