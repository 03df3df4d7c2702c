"""Task steps and wake-ups that ferroloop queues without a handle (src/event_loop/task_calls.rs).

The C Task and Future drop the handle their `call_soon` gets; everything anyone can observe must
stay as asyncio has it: order, contexts, what an overriding `call_soon` gets back, debug mode.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import subprocess
import sys
from unittest import mock

import ferroloop
import pytest
from conftest import collect_garbage, recorded_warnings

LOOP_CLASSES = {"asyncio": asyncio.SelectorEventLoop, "ferroloop": ferroloop.EventLoop}


def test_task_steps_keep_their_place_among_callbacks(loop):
    order = []

    async def task(name):
        order.append(f"{name} starts")
        await asyncio.sleep(0)
        order.append(f"{name} resumes")
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut
        order.append(f"{name} woken")

    async def main():
        loop.call_soon(order.append, "callback 1")
        tasks = [loop.create_task(task("a")), loop.create_task(task("b"))]
        loop.call_soon(order.append, "callback 2")
        await asyncio.gather(*tasks)

    loop.run_until_complete(main())
    assert order == [
        "callback 1",
        "a starts",
        "b starts",
        "callback 2",
        "a resumes",
        "b resumes",
        "a woken",
        "b woken",
    ]


def test_task_steps_run_in_the_task_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def child(value):
        seen.append(var.get())
        var.set(value)
        await asyncio.sleep(0)
        seen.append(var.get())

    async def main():
        var.set("parent")
        await asyncio.gather(loop.create_task(child("a")), loop.create_task(child("b")))
        seen.append(var.get())

    loop.run_until_complete(main())
    assert seen == ["parent", "parent", "a", "b", "parent"]


@pytest.mark.parametrize("loop_name", sorted(LOOP_CLASSES))
def test_an_overriding_call_soon_gets_a_handle_for_every_call(loop_name):
    returned = []

    class Recording(LOOP_CLASSES[loop_name]):
        def call_soon(self, callback, *args, context=None):
            handle = super().call_soon(callback, *args, context=context)
            returned.append(handle)
            return handle

    loop = Recording()
    try:

        async def child():
            await asyncio.sleep(0)
            fut = loop.create_future()
            loop.call_soon(fut.set_result, 1)
            return await fut

        async def main():
            return await asyncio.gather(*(loop.create_task(child()) for _ in range(3)))

        assert loop.run_until_complete(main()) == [1, 1, 1]
    finally:
        loop.close()
    assert len(returned) >= 12
    assert all(isinstance(h, asyncio.Handle) or type(h).__name__ == "Handle" for h in returned)
    assert None not in returned


def test_a_call_soon_patched_on_the_instance_gets_handles(loop):
    async def child():
        await asyncio.sleep(0)

    async def main():
        with mock.patch.object(loop, "call_soon", wraps=loop.call_soon) as spy:
            await loop.create_task(child())
        return spy

    spy = loop.run_until_complete(main())
    assert spy.call_count >= 2
    results = []
    original = loop.call_soon

    def wrapper(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    async def patched():
        loop.call_soon = wrapper
        try:
            await loop.create_task(child())
        finally:
            del loop.call_soon

    loop.run_until_complete(patched())
    assert len(results) >= 2 and None not in results


def test_debug_mode_switched_on_with_steps_queued_names_the_task(loop, caplog):
    async def child():
        await asyncio.sleep(0)

    async def main():
        tasks = [loop.create_task(child(), name=f"child-{i}") for i in range(3)]
        loop.set_debug(True)
        loop.slow_callback_duration = 0.0
        await asyncio.gather(*tasks)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(main())
    messages = [r.getMessage() for r in caplog.records]
    for i in range(3):
        assert any(m.startswith("Executing <Task") and f"child-{i}" in m for m in messages)


def test_a_dropped_stopped_loop_with_task_steps_queued_is_collected(loop_factory):
    import weakref

    loop = loop_factory()

    async def never_started():
        pass

    async def main(loop):
        for _ in range(3):
            loop.create_task(never_started())

    loop.run_until_complete(main(loop))
    ref = weakref.ref(loop)
    # ferroloop's loop is freed here, by its reference count: its "unclosed event loop"
    # ResourceWarning is recorded and dropped, as collect_garbage() does with asyncio's.
    with recorded_warnings():
        del loop
    collect_garbage()
    assert ref() is None


def test_importing_inside_a_running_loop_keeps_it_and_warns_nothing():
    # Learning the C Task's callbacks drives a task on a stand-in loop made the running loop for
    # the while (3.14 requires it): the loop that was running must be running again after.
    program = (
        "import asyncio, gc\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    import ferroloop._task_calls as calls\n"
        "    return calls.LEARNT, asyncio.get_running_loop() is loop\n"
        "print(asyncio.run(main()))\n"
        "gc.collect()\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", program], capture_output=True, text=True
    )
    learnt = asyncio.Task is not asyncio.tasks._PyTask and sys.version_info >= (3, 10)
    assert (done.stdout, done.stderr) == (f"({learnt}, True)\n", "")


def test_the_c_task_callbacks_were_learnt_at_import():
    import asyncio.tasks

    from ferroloop import _task_calls

    if asyncio.Task is asyncio.tasks._PyTask:
        pytest.skip("this Python has no C Task, so there is nothing to learn")
    if sys.version_info < (3, 10):
        pytest.skip("3.9's C Task wakes through a TaskWakeupMethWrapper, not learnt: handles")
    assert _task_calls.LEARNT
