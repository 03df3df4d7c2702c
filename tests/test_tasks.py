"""Tasks and futures are CPython's own; the loop must schedule them exactly as asyncio does."""

from __future__ import annotations

import asyncio
import contextvars
import re
import subprocess
import sys

import pytest


def test_create_task_starts_before_anyone_awaits(loop):
    order = []

    async def child(name):
        order.append(f"{name} start")
        await asyncio.sleep(0)
        order.append(f"{name} end")

    async def main():
        t = asyncio.create_task(child("task"))
        c = child("coro")
        order.append("main yields")
        await asyncio.sleep(0)
        order.append("main gathers")
        await asyncio.gather(t, c)

    loop.run_until_complete(main())
    assert order == [
        "main yields",
        "task start",
        "main gathers",
        "task end",
        "coro start",
        "coro end",
    ]


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_importing_ferroloop_leaves_the_task_name_counter_alone(loop_name):
    # Unnamed tasks are called "Task-<n>" from one process-wide counter; a program's first task
    # is "Task-1" whether or not ferroloop was imported (its import drives a task of its own).
    new_loop = {"asyncio": "asyncio.SelectorEventLoop", "ferroloop": "ferroloop.new_event_loop"}
    script = f"""
import asyncio, ferroloop
loop = {new_loop[loop_name]}()
async def main():
    print(asyncio.current_task().get_name(), asyncio.create_task(asyncio.sleep(0)).get_name())
loop.run_until_complete(main())
loop.close()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Task-1", "Task-2"]


def test_task_interface(loop):
    async def work():
        assert asyncio.current_task() is task
        return 7

    task = loop.create_task(work(), name="worker")
    assert isinstance(task, asyncio.Task)
    assert task.get_name() == "worker"
    assert task.get_loop() is loop
    assert task in asyncio.all_tasks(loop)
    assert loop.run_until_complete(task) == 7


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is new in 3.11")
def test_create_task_with_context(loop):
    var = contextvars.ContextVar("var", default="none")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")

    async def read():
        return var.get()

    assert loop.run_until_complete(loop.create_task(read(), context=ctx)) == "ctx"


def test_create_task_passes_other_keywords_on_from_3_13_3(loop):
    # gh-128307: from 3.13.3 create_task forwards any keyword (eager_start...) to Task.
    async def work():
        return 1

    coro = work()
    if sys.version_info >= (3, 13, 3):
        assert loop.run_until_complete(loop.create_task(coro, eager_start=False)) == 1
        return
    prefix = "BaseEventLoop." if sys.version_info >= (3, 10) else ""
    message = f"{prefix}create_task() got an unexpected keyword argument 'eager_start'"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        loop.create_task(coro, eager_start=False)
    coro.close()


def test_task_factory(loop):
    made = []

    def factory(lp, coro, **kwargs):
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def work():
        return asyncio.current_task().get_name()

    assert loop.run_until_complete(loop.create_task(work(), name="named")) == "named"
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert made
    with pytest.raises(TypeError, match="^task factory must be a callable or None$"):
        loop.set_task_factory(1)


def test_task_factory_is_where_asyncio_keeps_it(loop):
    # Libraries read loop._task_factory to see whether theirs is installed, and some assign it.
    def factory(lp, coro, **kwargs):
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop._task_factory is None
    loop.set_task_factory(factory)
    assert loop._task_factory is factory
    loop._task_factory = None
    assert loop.get_task_factory() is None
    loop._task_factory = factory
    assert loop.get_task_factory() is factory


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
def test_eager_task_factory(loop):
    order = []

    async def child():
        order.append("child ran")

    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        asyncio.create_task(child())
        order.append("after create_task")

    loop.run_until_complete(main())
    assert order == ["child ran", "after create_task"]


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    loop.call_soon(fut.set_result, 3)
    assert loop.run_until_complete(fut) == 3


def test_gather_of_many_tasks_and_coroutines(loop):
    async def square(i):
        await asyncio.sleep(0)
        return i * i

    async def main():
        tasks = [asyncio.create_task(square(i)) for i in range(1000)]
        coros = [square(i) for i in range(1000)]
        return await asyncio.gather(*tasks), await asyncio.gather(*coros)

    a, b = loop.run_until_complete(main())
    assert a == b == [i * i for i in range(1000)]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup and timeout are new in 3.11")
def test_task_group_and_timeout(loop):
    async def main():
        results = []
        async with asyncio.TaskGroup() as tg:
            for i in range(5):
                tg.create_task(asyncio.sleep(0.001 * i, result=i)).add_done_callback(
                    lambda t: results.append(t.result())
                )
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        async with asyncio.timeout(10):
            await asyncio.sleep(0)
        return sorted(results)

    assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]


def test_task_group_error_cancels_siblings(loop):
    if sys.version_info < (3, 11):
        pytest.skip("TaskGroup is new in 3.11")

    async def fail():
        await asyncio.sleep(0.001)
        raise ValueError("bad")

    async def main():
        sibling = None
        with pytest.raises(ExceptionGroup) as info:  # noqa: F821 (3.11+)
            async with asyncio.TaskGroup() as tg:
                sibling = tg.create_task(asyncio.sleep(10))
                tg.create_task(fail())
        assert sibling.cancelled()
        return info.value.exceptions

    (exc,) = loop.run_until_complete(main())
    assert isinstance(exc, ValueError)


def test_cancellation_and_wait_for(loop):
    async def main():
        t = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        t.cancel("stop it")
        with pytest.raises(asyncio.CancelledError):
            await t
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        return await asyncio.wait_for(asyncio.sleep(0, result="ok"), 1)

    assert loop.run_until_complete(main()) == "ok"


def test_locks_events_and_queues(loop):
    async def main():
        lock, event, q = asyncio.Lock(), asyncio.Event(), asyncio.Queue()
        log = []

        async def worker(i):
            await event.wait()
            async with lock:
                log.append(i)
                await q.put(i)

        workers = [asyncio.create_task(worker(i)) for i in range(5)]
        await asyncio.sleep(0)
        event.set()
        got = [await q.get() for _ in range(5)]
        await asyncio.gather(*workers)
        return log, got

    log, got = loop.run_until_complete(main())
    assert log == got == [0, 1, 2, 3, 4]


def test_unhandled_task_exception_is_logged_on_gc(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise KeyError("lost")

    async def main():
        asyncio.ensure_future(fail())
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    import gc

    gc.collect()
    assert any(c["message"] == "Task exception was never retrieved" for c in contexts)
