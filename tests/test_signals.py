"""add_signal_handler / remove_signal_handler, on asyncio and ferroloop alike."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from conftest import LOOP_FACTORIES


def test_handler_runs_as_a_loop_callback(loop):
    seen = []

    def on_usr1(tag):
        seen.append((tag, threading.current_thread() is threading.main_thread()))
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_usr1, "usr1")
    guard = loop.call_later(10, loop.stop)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.run_forever()
    guard.cancel()
    assert seen == [("usr1", True)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_removing_the_sigint_handler_restores_keyboard_interrupt(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    assert loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_invalid_signals(loop):
    with pytest.raises(RuntimeError, match=r"^sig 9 cannot be caught$"):
        loop.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(ValueError, match=r"^invalid signal number 0$"):
        loop.add_signal_handler(0, print)
    with pytest.raises(ValueError, match=r"^invalid signal number 1000$"):
        loop.add_signal_handler(1000, print)
    with pytest.raises(TypeError, match=r"^sig must be an int, not 'x'$"):
        loop.add_signal_handler("x", print)

    async def coro():
        pass

    with pytest.raises(TypeError, match=r"coroutines cannot be used with add_signal_handler\(\)"):
        loop.add_signal_handler(signal.SIGUSR1, coro)


def test_only_the_main_thread(loop):
    errors = []

    def worker():
        try:
            loop.add_signal_handler(signal.SIGUSR2, print)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and "main thread" in errors[0]


def test_close_removes_handlers(loop_factory):
    loop = loop_factory()
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


@pytest.mark.parametrize("name", sorted(LOOP_FACTORIES))
def test_several_loops_one_after_another(name):
    for i in range(3):
        loop = LOOP_FACTORIES[name]()
        seen = []
        loop.add_signal_handler(
            signal.SIGUSR1, lambda lp=loop, s=seen, i=i: (s.append(i), lp.stop())
        )
        guard = loop.call_later(10, loop.stop)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_forever()
        guard.cancel()
        loop.close()
        assert seen == [i]


def test_a_signal_another_thread_takes_wakes_the_loop_for_its_python_handler():
    # CPython runs Python-level handlers (signal.signal, as asyncio.Runner installs for Ctrl-C) in
    # the main thread, when it next checks. A signal taken by another thread, or one that lands
    # just before the loop blocks, trips the handler's flag without interrupting the poll: asyncio
    # then sleeps until its next timer, since it sets a wakeup fd only in add_signal_handler.
    # ferroloop installs its poller's wakeup fd while it runs in the main thread, as uvloop does.
    import time

    import ferroloop

    loop = ferroloop.new_event_loop()
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: (seen.append("handler"), loop.stop()))

    def from_another_thread():
        time.sleep(0.1)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    try:
        worker = threading.Thread(target=from_another_thread)
        guard = loop.call_later(10, loop.stop)
        worker.start()
        start = time.monotonic()
        loop.run_forever()
        elapsed = time.monotonic() - start
        worker.join()
        guard.cancel()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        loop.close()
    assert seen == ["handler"]
    assert elapsed < 5


def test_the_wakeup_fd_is_the_loops_only_while_it_runs_and_never_someone_elses(loop_factory):
    loop = loop_factory()
    during = []
    try:
        loop.call_soon(lambda: during.append(signal.set_wakeup_fd(-1)))
        loop.call_soon(lambda: signal.set_wakeup_fd(during[0]))
        loop.run_until_complete(asyncio_sleep0())
        assert signal.set_wakeup_fd(-1) == -1, "nothing left behind"
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            signal.set_wakeup_fd(w)
            during.clear()
            loop.call_soon(lambda: during.append(signal.set_wakeup_fd(w)))
            loop.run_until_complete(asyncio_sleep0())
            assert during == [w], "a wakeup fd set before the run is left in place"
            assert signal.set_wakeup_fd(-1) == w
        finally:
            os.close(r)
            os.close(w)
    finally:
        loop.close()


async def asyncio_sleep0():
    import asyncio

    await asyncio.sleep(0)
