"""Random programs of callbacks, timers, cancellations, stops, futures and tasks run in the same
order, callback for callback, on asyncio and on ferroloop.

Each callback draws its next actions from one seeded generator, so the two loops run the same
program only as long as they run it in the same order: the first difference in order changes every
draw after it and shows in the trace. No action waits for real time: timers are due already (at
distinct deadlines in the past, since asyncio leaves the order of equal deadlines to its heap) or
far in the future, to be cancelled, so a turn's content does not depend on how fast the loop is.
"""

from __future__ import annotations

import asyncio
import random
import sys

import pytest
from conftest import LOOP_FACTORIES

CALLBACKS = 1500
# A program that died out early (every chain drew no follow-up) would test little.
SHORTEST_TRACE = 1000
FAR = 10_000.0


class Program:
    def __init__(self, loop, seed):
        self.loop = loop
        self.rnd = random.Random(seed)
        self.trace = []
        self.ids = 0
        # Callbacks and tasks scheduled and not yet run or done; at zero the program is over and
        # stops the loop (far timers, cancelled at the end, do not count).
        self.outstanding = 0
        self.finished = False
        self.far_timers = []
        self.past = loop.time() - 1000.0

    def callback(self, name, actions=None):
        self.record(name, actions)
        self.done_one()

    def record(self, name, actions=None):
        """Notes that `name` ran and takes its next actions."""
        self.trace.append(name)
        if self.ids < CALLBACKS:
            for _ in range(actions or self.rnd.choice([0, 1, 2, 2, 3])):
                self.act()

    def done_one(self):
        self.outstanding -= 1
        if self.outstanding == 0:
            self.finished = True
            self.loop.stop()

    def act(self):
        loop, rnd = self.loop, self.rnd
        action = rnd.random()
        self.ids += 1
        name = f"cb{self.ids}"
        if action < 0.25:
            self.outstanding += 1
            loop.call_soon(self.callback, name)
        elif action < 0.4:
            self.outstanding += 1
            loop.call_at(self.past + rnd.random() * 900.0, self.callback, name)
        elif action < 0.45:
            self.outstanding += 1
            # Whole seconds apart: the deadline is the call's time minus the delay, and the order
            # of two must not hang on how much time passed between them.
            loop.call_later(-rnd.randrange(1, 10**6), self.callback, name)
        elif action < 0.55:
            self.far_timers.append(loop.call_at(loop.time() + FAR, self.callback, name))
        elif action < 0.65 and self.far_timers:
            handle = self.far_timers.pop(rnd.randrange(len(self.far_timers)))
            handle.cancel()
            self.trace.append(f"cancelled {handle.cancelled()}")
        elif action < 0.67:
            loop.stop()
            self.trace.append("stop")
        elif action < 0.77:
            self.outstanding += 1
            task = loop.create_task(self.coroutine(name))
            task.add_done_callback(lambda task: self.done_one())
            if rnd.random() < 0.2:
                loop.call_soon(task.cancel)
        elif action < 0.85:
            self.outstanding += 1
            future = loop.create_future()
            future.add_done_callback(lambda f, name=name: self.callback(f"{name} {f.result()}"))
            loop.call_soon(future.set_result, name)
        elif action < 0.9:
            self.outstanding += 1
            loop.call_soon_threadsafe(self.callback, name)
        else:
            handle = loop.call_soon(self.callback, name)
            if rnd.random() < 0.5:
                handle.cancel()
            else:
                self.outstanding += 1

    async def coroutine(self, name):
        try:
            for step in range(self.rnd.randrange(4)):
                kind = self.rnd.random()
                if kind < 0.5:
                    await asyncio.sleep(0)
                elif kind < 0.8:
                    future = self.loop.create_future()
                    self.loop.call_soon(_resolve, future, step)
                    await future
                else:
                    await asyncio.sleep(-1)
                self.record(f"{name} step {step}")
        except asyncio.CancelledError:
            self.trace.append(f"{name} cancelled")
            raise


def _resolve(future, value):
    """Resolves a task's future, unless cancelling the task cancelled it first."""
    if not future.done():
        future.set_result(value)


def run_program(loop_factory, seed, eager=False):
    loop = loop_factory()
    if eager:
        loop.set_task_factory(asyncio.eager_task_factory)
    try:
        program = Program(loop, seed)
        program.outstanding = 1
        loop.call_soon(program.callback, "start", 30)
        while not program.finished:
            loop.run_forever()
            program.trace.append("run_forever returned")
        for handle in program.far_timers:
            handle.cancel()
        return program.trace
    finally:
        loop.close()


@pytest.mark.parametrize("seed", range(30))
def test_random_programs_run_in_asyncio_order(seed):
    expected = run_program(LOOP_FACTORIES["asyncio"], seed)
    assert len(expected) > SHORTEST_TRACE
    assert run_program(LOOP_FACTORIES["ferroloop"], seed) == expected


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
@pytest.mark.parametrize("seed", range(10))
def test_random_programs_with_eager_tasks_run_in_asyncio_order(seed):
    expected = run_program(LOOP_FACTORIES["asyncio"], seed, eager=True)
    assert run_program(LOOP_FACTORIES["ferroloop"], seed, eager=True) == expected
