"""Random programs whose callbacks, protocols, tasks, futures and timers raise: the exception
handler gets the same contexts, in the same order, on asyncio and on ferroloop, and the protocols
see the same callbacks.

A context is compared whole: its keys, its message, the exception, the handle or future and its
repr. What is allowed to differ is normalized first: addresses, fds, deadlines and task numbers,
and the transport's class name (asyncio's `_SelectorSocketTransport`, ferroloop's
`SocketTransport`; both are `asyncio.Transport`s), which also changes where a long repr is cut.
In debug mode the contexts carry creation tracebacks, compared by the program's own frames: the
loops' own frames differ (README, "Where it differs from asyncio"), and so does the place a repr
says an object was "created at" where that is inside the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import re
import socket

import ferroloop
import pytest
from conftest import LOOP_FACTORIES

STEPS = 40
PAIRS = 6


class Boom(Exception):
    pass


NORMALIZED = [
    (re.compile(r"0x[0-9a-f]+"), "0x"),
    (re.compile(r"fd=\d+"), "fd=N"),
    (re.compile(r"when=[0-9.]+"), "when=T"),
    (re.compile(r"Task-\d+"), "Task-N"),
    (re.compile(r"_SelectorSocketTransport"), "SocketTransport"),
    (re.compile(r"<(_SelectorSoc|SocketTransp)\.\.\."), "<T..."),
    (re.compile(r" created at \S+:\d+"), " created at X"),
]
TRACEBACKS = ("source_traceback", "handle_traceback")
LOOPS_OWN_CODE = (os.path.dirname(asyncio.__file__), os.path.dirname(ferroloop.__file__))


def program_frames(stack) -> list[tuple[str, int, str]]:
    """The frames of a creation traceback that are the program's, inside `run_program`."""
    frames = [(f.filename, f.lineno, f.name) for f in stack]
    frames = [f for f in frames if not f[0].startswith(LOOPS_OWN_CODE)]
    names = [name for _, _, name in frames]
    return frames[names.index("run_program") + 1 :] if "run_program" in names else frames


def normalized(key, value) -> str:
    if key in TRACEBACKS:
        return repr(program_frames(value))
    text = repr(value)
    for pattern, replacement in NORMALIZED:
        text = pattern.sub(replacement, text)
    return text


class Raising(asyncio.Protocol):
    def __init__(self, index, rnd, trace):
        self.index, self.rnd, self.trace = index, rnd, trace

    def maybe_raise(self, what):
        if self.rnd.random() < 0.3:
            raise Boom(f"{what} {self.index}")

    def connection_made(self, transport):
        if self.rnd.random() < 0.1:
            raise Boom(f"made {self.index}")

    def data_received(self, data):
        self.trace.append(f"data {self.index}")
        self.maybe_raise("data")

    def eof_received(self):
        self.trace.append(f"eof {self.index}")
        self.maybe_raise("eof")

    def connection_lost(self, exc):
        self.trace.append(f"lost {self.index} {exc!r}")
        self.maybe_raise("lost")


def _raise(exception):
    raise exception


async def _raising_task(step):
    await asyncio.sleep(0)
    raise Boom(f"task {step}")


def run_program(loop_factory, seed, debug):
    rnd = random.Random(seed)
    loop = loop_factory()
    loop.set_debug(debug)
    trace, reports = [], []
    loop.set_exception_handler(
        lambda loop, context: reports.append(
            sorted((key, normalized(key, value)) for key, value in context.items())
        )
    )

    async def main():
        peers = []
        for index in range(PAIRS):
            ours, peer = socket.socketpair()
            peer.setblocking(False)
            await loop.connect_accepted_socket(lambda i=index: Raising(i, rnd, trace), ours)
            peers.append(peer)
        for step in range(STEPS):
            action = rnd.random()
            if action < 0.2:
                loop.call_soon(_raise, Boom(f"callback {step}"))
            elif action < 0.3:
                loop.create_task(_raising_task(step))
            elif action < 0.4:
                loop.create_future().set_exception(Boom(f"future {step}"))
            elif action < 0.6:
                with contextlib.suppress(OSError):  # the peer may be gone
                    rnd.choice(peers).send(b"x")
            elif action < 0.7:
                with contextlib.suppress(OSError):  # the peer may be gone
                    rnd.choice(peers).shutdown(socket.SHUT_WR)
            elif action < 0.75:
                loop.call_later(-1, _raise, ZeroDivisionError(step))
            await asyncio.sleep(0)
        for peer in peers:
            peer.close()
        for _ in range(5):
            await asyncio.sleep(0)

    # Unretrieved exceptions are reported when their task or future is freed: at once when
    # only references held it, at a collection when a cycle did. Automatic collections come
    # after a count of allocations, which the two loops do not share; the one collection here
    # comes at the same point of the program on both.
    automatic = gc.isenabled()
    gc.disable()
    try:
        loop.run_until_complete(main())
        gc.collect()
    finally:
        loop.close()
        if automatic:
            gc.enable()
    return trace, reports


@pytest.mark.parametrize("debug", [False, True], ids=["default", "debug"])
@pytest.mark.parametrize("seed", range(20))
def test_random_failures_are_reported_as_asyncio_reports_them(seed, debug):
    expected_trace, expected_reports = run_program(LOOP_FACTORIES["asyncio"], seed, debug)
    assert len(expected_reports) > 5
    if debug:
        assert any(key in TRACEBACKS for report in expected_reports for key, _ in report)
    trace, reports = run_program(LOOP_FACTORIES["ferroloop"], seed, debug)
    assert trace == expected_trace
    assert reports == expected_reports
