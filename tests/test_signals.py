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
