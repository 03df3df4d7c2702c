"""Other threads get the GIL while the loop is busy, as asyncio's selector lets them have it in
every poll: a loop that kept it while it had work left an executor's worker one turn per switch
interval."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

# A loop that never let go of the GIL while busy would hold it for the whole interval each time
# another thread asked for it: one second per executor job, 20 s for the 20 jobs below.
SWITCH_INTERVAL = 1.0
# A loop that lets go of it in every poll runs them in milliseconds; but where other processes
# keep every core busy, a thread asking for the GIL is not always running when the loop lets go,
# and then waits an interval, on asyncio's loop as on ferroloop (two busy processes on this 2-core
# VM: up to 2.8 s for the 20 jobs on asyncio, 1.9 s on ferroloop). The bound allows such misses
# and still fails a loop that keeps the GIL while busy.
BOUND = 5 * SWITCH_INTERVAL


@pytest.fixture
def long_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(old)


async def _while_busy(work):
    """Runs `work()` while ten tasks keep the loop's ready queue full; returns its duration."""
    stop = False

    async def busy():
        while not stop:
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(busy()) for _ in range(10)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    try:
        await work()
    finally:
        stop = True
        await asyncio.gather(*tasks)
    return time.perf_counter() - start


def test_executor_jobs_finish_while_the_loop_is_busy(loop, long_switch_interval):
    async def jobs():
        # The first job also starts the executor's worker thread.
        for i in range(20):
            assert await loop.run_in_executor(None, abs, -i) == i

    elapsed = loop.run_until_complete(_while_busy(jobs))
    assert elapsed < BOUND


def test_a_thread_takes_the_gil_again_and_again_while_the_loop_is_busy(loop, long_switch_interval):
    async def thread_work():
        done = loop.create_future()

        def worker():
            for _ in range(50):
                time.sleep(0)  # lets go of the GIL and asks for it again
            loop.call_soon_threadsafe(done.set_result, None)

        thread = threading.Thread(target=worker)
        thread.start()
        await done
        thread.join()

    elapsed = loop.run_until_complete(_while_busy(thread_work))
    assert elapsed < BOUND
