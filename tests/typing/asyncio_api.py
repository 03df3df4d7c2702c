"""Code typed against asyncio's own API, handed ferroloop's loop by each of its doors.

tests/test_typing.py checks it with `mypy --strict` (ferroloop ships py.typed and stubs, so a
typed program that switches loops must still check) and runs it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import ferroloop

if TYPE_CHECKING:
    from typing_extensions import assert_type

    # Not Any, which any annotation would accept: the policy's base must be known to mypy.
    assert_type(ferroloop.EventLoopPolicy().new_event_loop(), asyncio.AbstractEventLoop)
    assert_type(ferroloop.new_event_loop().call_later(1, print), asyncio.TimerHandle)


async def answer() -> int:
    await asyncio.sleep(0)
    return 42


def schedule(loop: asyncio.AbstractEventLoop) -> list[asyncio.Handle]:
    handles: list[asyncio.Handle] = [loop.call_soon(print), loop.call_soon_threadsafe(print)]
    timer: asyncio.TimerHandle = loop.call_later(60, print)
    handles += [timer, loop.call_at(loop.time() + 60, print)]
    for handle in handles:
        handle.cancel()
    return handles


def use_the_loop(loop: ferroloop.EventLoop) -> int:
    handles = schedule(loop)
    soon: asyncio.Handle = loop.call_soon(print)
    later: asyncio.TimerHandle = loop.call_later(60, print)
    when: float = later.when()
    soon.cancel()
    later.cancel()
    future: asyncio.Future[int] = loop.create_future()
    future.set_result(len(handles))
    task: asyncio.Task[int] = loop.create_task(answer())
    result: int = loop.run_until_complete(task) + loop.run_until_complete(future)
    return result if when > 0 else 0


def never_called(loop: ferroloop.EventLoop) -> None:
    # A callback's arguments are checked as asyncio's loop has them checked: were they not, the
    # ignore would be unused, which --strict reports.
    loop.call_soon(len, 1)  # type: ignore[arg-type]
    loop.call_later(1, asyncio.sleep, "one")  # type: ignore[arg-type]


def every_door() -> list[int]:
    results = [ferroloop.run(answer()), ferroloop.run(answer(), debug=False)]
    loop = ferroloop.new_event_loop()
    try:
        results.append(use_the_loop(loop))
    finally:
        loop.close()
    if sys.version_info >= (3, 12):
        results.append(asyncio.run(answer(), loop_factory=ferroloop.new_event_loop))
    policy: asyncio.AbstractEventLoopPolicy = ferroloop.EventLoopPolicy()
    other: asyncio.AbstractEventLoop = policy.new_event_loop()
    other.close()
    return results
