"""Shows the native loop the two callbacks CPython's C Task and Future schedule and never look at
again: a task's step (a ``TaskStepMethWrapper``) and its wake-up (the ``task_wakeup`` builtin).

Neither type can be reached by name from Python, so one task is driven through a step and a
wake-up on a recording stand-in for a loop, and what it scheduled is handed to the native side,
which then queues such calls without making a handle for them (see
``src/event_loop/task_calls.rs``). Without the C accelerator there is nothing to learn, and
every call gets its handle as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import _ferroloop


class _RecordingLoop:
    """Just enough of a loop for a Task and a Future: it records what they schedule."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Any, tuple[Any, ...]]] = []

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> None:
        self.scheduled.append((callback, args))

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        pass


def _learn() -> None:
    global LEARNT
    if asyncio.Task is asyncio.tasks._PyTask or asyncio.Future is asyncio.futures._PyFuture:
        return
    recorder = _RecordingLoop()
    future = asyncio.Future(loop=recorder)

    async def waits() -> None:
        await future

    task = asyncio.Task(waits(), loop=recorder)
    step, _ = recorder.scheduled[0]
    step()  # runs to `await future`, which adds the task's wake-up to the future
    future.set_result(None)
    wakeup, args = recorder.scheduled[1]
    wakeup(*args)  # runs the task to its end
    if not task.done() or args != (future,):
        return
    _ferroloop._register_task_calls(step, wakeup)
    LEARNT = True


# Whether the native loop knows the two callbacks (the tests check it on CPython with _asyncio).
LEARNT = False

# Python 3.10 to 3.13 are learnt; 3.9 wakes tasks through a TaskWakeupMethWrapper instead of the
# builtin, and register_task_calls refuses it. Should a CPython drive its tasks another way,
# ferroloop gives every call a handle rather than fail to import.
try:
    _learn()
except Exception:  # noqa: BLE001
    pass
