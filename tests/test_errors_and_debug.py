"""Exceptions in callbacks, the exception handler, logging, handle reprs and debug mode."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import warnings

import ferroloop
import pytest
from conftest import run_turns


def boom():
    raise ZeroDivisionError("boom")


def test_callback_exception_goes_to_the_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    h = loop.call_soon(boom)
    loop.call_soon(lambda: contexts.append("next callback still runs"))
    run_turns(loop)
    (lp, ctx), after = contexts
    assert lp is loop
    assert after == "next callback still runs"
    where = f"{__file__}:{boom.__code__.co_firstlineno}"
    assert ctx["message"] == f"Exception in callback boom() at {where}"
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["exception"].__traceback__ is not None
    assert ctx["handle"] is h
    assert loop.get_exception_handler() is not None


def test_default_handler_logs_like_asyncio(loop, caplog):
    loop.call_soon(boom)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_turns(loop)
    (record,) = caplog.records
    assert record.name == "asyncio"
    assert record.getMessage().startswith("Exception in callback boom()")
    assert "handle: <Handle boom() at " in record.getMessage()
    assert record.exc_info[0] is ZeroDivisionError


def test_failing_exception_handler_is_logged(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(bad_handler)
    loop.call_soon(boom)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_turns(loop)
    assert caplog.records[0].getMessage().startswith("Unhandled error in exception handler")


def test_set_exception_handler_rejects_non_callables(loop):
    with pytest.raises(TypeError, match=r"A callable object or None is expected, got 42"):
        loop.set_exception_handler(42)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate(loop, exc_type):
    seen = []

    def raiser():
        raise exc_type()

    loop.call_soon(raiser)
    loop.call_soon(seen.append, "left for the next run")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    run_turns(loop)
    assert seen == ["left for the next run"]


def test_handle_reprs_match_asyncio(loop):
    loop.set_debug(False)  # debug mode adds "created at" (PYTHONDEVMODE turns it on)
    h = loop.call_soon(print, 1, "a")
    # Python 3.13 shows a callback's arguments in debug mode only (CPython gh-112997).
    shown = "()" if sys.version_info >= (3, 13) else "(1, 'a')"
    assert repr(h) == f"<Handle print{shown}>"
    h.cancel()
    assert repr(h) == "<Handle cancelled>"
    t = loop.call_at(12.5, print)
    assert repr(t) == "<TimerHandle when=12.5 print()>"
    t.cancel()
    assert repr(t) == "<TimerHandle cancelled when=12.5>"
    loop.set_debug(True)
    h = loop.call_soon(print, 1, "a")
    assert repr(h).startswith("<Handle print(1, 'a') created at ")
    h.cancel()


def test_loop_repr(loop):
    loop.set_debug(False)  # as PYTHONDEVMODE would not have it
    assert re.fullmatch(r"<\w+ running=False closed=False debug=False>", repr(loop))


def test_set_debug_takes_any_value_by_its_truth(loop):
    loop.set_debug(1)
    assert loop.get_debug()
    loop.set_debug(0)
    assert not loop.get_debug()
    loop.set_debug([])
    assert not loop.get_debug()


def test_debug_mode_records_where_handles_were_created(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    lineno = sys._getframe().f_lineno - 1
    assert h._source_traceback[-1][:3] == (
        __file__,
        lineno,
        "test_debug_mode_records_where_handles_were_created",
    )
    assert repr(h).endswith(f"created at {__file__}:{lineno}>")
    t = loop.call_later(1, print)
    lineno = sys._getframe().f_lineno - 1
    assert t._source_traceback[-1][:2] == (__file__, lineno)
    t.cancel()
    run_turns(loop)


def test_debug_mode_warns_about_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    import time

    loop.call_soon(time.sleep, 0.03)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_turns(loop)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        re.fullmatch(r"Executing <Handle sleep\(0\.03\) created at .*> took 0\.0\d\d seconds", m)
        for m in messages
    ), messages


def test_debug_mode_rejects_coroutines_and_non_callables(loop):
    loop.set_debug(True)

    async def coro_func():
        pass

    with pytest.raises(TypeError, match=r"^coroutines cannot be used with call_soon\(\)$"):
        loop.call_soon(coro_func)
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with call_at\(\)$"):
        loop.call_later(1, coro_func)
    with pytest.raises(
        TypeError, match=r"^a callable object was expected by call_soon\(\), got 42$"
    ):
        loop.call_soon(42)


def test_debug_mode_checks_warn_about_nothing(loop):
    # Python 3.14 deprecates asyncio.iscoroutinefunction (it warns when called); asyncio's own
    # check calls the private name, and so must ferroloop's.
    loop.set_debug(True)

    async def coro_func():
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.call_soon(coro_func)
        loop.call_soon(print).cancel()


def test_debug_mode_checks_the_calling_thread(loop):
    loop.set_debug(True)
    errors = []

    def from_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_thread).start())
    loop.run_forever()
    assert errors == [
        "Non-thread-safe operation invoked on an event loop other than the current one"
    ]


def test_debug_exception_context_carries_source_traceback(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(boom)
    run_turns(loop)
    assert contexts[0]["source_traceback"][-1][0] == __file__


def test_unclosed_loop_warns(loop_factory):
    loop = loop_factory()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        loop.__del__()
    assert loop.is_closed()


def test_close(loop):
    loop.call_soon(print)
    loop.call_later(1, print)
    loop.close()
    loop.close()
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        coro = asyncio.sleep(0)
        try:
            loop.run_until_complete(coro)
        finally:
            coro.close()


def test_close_while_running_is_refused(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda loop: loop.call_later(),
            "BaseEventLoop.call_later() missing 2 required positional arguments: "
            "'delay' and 'callback'",
        ),
        (
            lambda loop: loop.call_at(1),
            "BaseEventLoop.call_at() missing 1 required positional argument: 'callback'",
        ),
        (
            lambda loop: loop.call_soon(),
            "BaseEventLoop.call_soon() missing 1 required positional argument: 'callback'",
        ),
        (
            lambda loop: loop.call_later(1, print, foo=1),
            "BaseEventLoop.call_later() got an unexpected keyword argument 'foo'",
        ),
        (
            lambda loop: loop.call_soon(print, callback=print),
            "BaseEventLoop.call_soon() got multiple values for argument 'callback'",
        ),
        (
            lambda loop: loop.call_soon_threadsafe(),
            "BaseEventLoop.call_soon_threadsafe() missing 1 required positional argument: "
            "'callback'",
        ),
        (lambda loop: loop.call_later(None, print), "delay must not be None"),
        (lambda loop: loop.call_at(None, print), "when cannot be None"),
    ],
)
def test_scheduling_argument_errors(loop, call, message):
    if sys.version_info < (3, 11):
        if message == "when cannot be None" and not isinstance(loop, ferroloop.EventLoop):
            pytest.skip("asyncio's only check before 3.11 is an assert: AssertionError")
        if message == "delay must not be None":  # no check before 3.11: the sum fails
            message = "unsupported operand type(s) for +: 'float' and 'NoneType'"
    if sys.version_info < (3, 10):  # argument errors name functions by qualified name from 3.10
        message = message.replace("BaseEventLoop.", "")
    with pytest.raises(TypeError) as info:
        call(loop)
    assert str(info.value) == message


def test_scheduling_accepts_keywords(loop):
    later = loop.call_later(delay=5, callback=print)
    soon = loop.call_soon(callback=print, context=None)
    at = loop.call_at(when=loop.time() + 1, callback=print)
    assert later.when() > loop.time()
    assert (type(soon).__name__, type(at).__name__) == ("Handle", "TimerHandle")
    for handle in (later, soon, at):
        handle.cancel()


@pytest.mark.parametrize("debug", [False, True])
def test_a_dropped_failed_task_is_reported_at_once(loop, debug):
    # The task's traceback holds its coroutine's frame, and through it the frame that ran the
    # task's step: that frame must not hold the step's handle, or the task outlives its last
    # reference and the report waits for the garbage collector.
    loop.set_debug(debug)
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx["message"]))

    async def fails():
        raise ZeroDivisionError

    async def main():
        asyncio.ensure_future(fails())
        await asyncio.sleep(0)
        return list(reports)

    assert loop.run_until_complete(main()) == ["Task exception was never retrieved"]
