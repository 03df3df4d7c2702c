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
import threading
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

    coro = waits()
    # From 3.14 a C task steps only while its loop is the running one (in this thread of its own,
    # where no other loop or task runs).
    asyncio.events._set_running_loop(recorder)
    try:
        # Named, so that it takes no number from asyncio's task-name counter: the program's
        # first task is still "Task-1".
        task = asyncio.Task(coro, loop=recorder, name="ferroloop-learn-task-calls")
        step, _ = recorder.scheduled[0]
        step()  # runs to `await future`, which adds the task's wake-up to the future
        future.set_result(None)
        wakeup, args = recorder.scheduled[1]
        wakeup(*args)  # runs the task to its end
    finally:
        asyncio.events._set_running_loop(None)
        coro.close()  # (a no-op once it ran; else no "never awaited" warning for it)
    if not task.done() or args != (future,):
        return
    _ferroloop._register_task_calls(step, wakeup)
    LEARNT = True


def _learn_quietly() -> None:
    # Python 3.10 to 3.14 are learnt; 3.9 wakes tasks through a TaskWakeupMethWrapper instead of
    # the builtin, and register_task_calls refuses it. Should a CPython drive its tasks another
    # way, ferroloop gives every call a handle rather than fail to import.
    try:
        _learn()
    except Exception:  # noqa: BLE001
        pass


# Whether the native loop knows the two callbacks (the tests check it on CPython with _asyncio).
LEARNT = False

# In a thread of its own: ferroloop may be imported inside a running task, and from 3.14 a thread
# in a task cannot step another one.
_learner = threading.Thread(target=_learn_quietly, name="ferroloop-learn-task-calls")
_learner.start()
_learner.join()
