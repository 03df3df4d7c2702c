"""Random programs over real sockets run in the same order on asyncio and on ferroloop: fd
callbacks (`add_reader`, `add_writer`, removed and added again), stream transports (data, pause,
resume, writes larger than the socket takes), peers that send and drain, `call_soon` and due
timers, one turn at a time.

As in test_scheduling_fuzz.py, every next action is drawn from one seeded generator in the order
the callbacks run, so any difference in order changes the rest of the trace. Each turn is one
`run_forever` with a stop queued first; what a turn's poll finds depends only on what the program
did before it (socket pairs on one machine, no waiting), so the traces are reproducible.
"""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from conftest import LOOP_FACTORIES

TURNS = 60
WATCHED_PAIRS = 6
TRANSPORT_PAIRS = 3


class Traced(asyncio.Protocol):
    def __init__(self, program, index):
        self.program, self.index = program, index

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        program, rnd = self.program, self.program.rnd
        program.trace.append(f"data {self.index} {len(data)}")
        action = rnd.random()
        if action < 0.2:
            self.transport.pause_reading()
            program.trace.append(f"paused {self.index}")
        elif action < 0.3:
            self.transport.write(b"y" * rnd.choice([1, 300_000]))
            program.trace.append(f"wrote {self.index}")
        program.act()

    def eof_received(self):
        self.program.trace.append(f"eof {self.index}")

    def connection_lost(self, exc):
        self.program.trace.append(f"lost {self.index}")


class IoProgram:
    def __init__(self, loop, seed):
        self.loop = loop
        self.rnd = random.Random(seed)
        self.trace = []
        self.running = True
        self.watched = [socket.socketpair() for _ in range(WATCHED_PAIRS)]
        for pair in self.watched:
            for sock in pair:
                sock.setblocking(False)
        self.streams = [socket.socketpair() for _ in range(TRANSPORT_PAIRS)]
        self.protocols = []
        for index, (ours, peer) in enumerate(self.streams):
            peer.setblocking(False)
            _, protocol = loop.run_until_complete(
                loop.connect_accepted_socket(lambda i=index: Traced(self, i), ours)
            )
            self.protocols.append(protocol)

    def readable(self, index):
        self.trace.append(f"readable {index}")
        if self.rnd.random() < 0.5:
            self.trace.append(f"drained {index} {len(self.watched[index][0].recv(1 << 20))}")
        self.act()

    def writable(self, index):
        self.trace.append(f"writable {index}")
        if self.rnd.random() < 0.5:
            removed = self.loop.remove_writer(self.watched[index][1])
            self.trace.append(f"unwatched {index} {removed}")
        self.act()

    def later(self, name):
        self.trace.append(name)
        self.act()

    def act(self):
        if not self.running:
            return
        loop, rnd = self.loop, self.rnd
        action = rnd.random()
        index = rnd.randrange(WATCHED_PAIRS)
        stream = rnd.randrange(TRANSPORT_PAIRS)
        reading, writing = self.watched[index]
        if action < 0.3:
            writing.send(b"x")
            self.trace.append(f"sent {index}")
        elif action < 0.45:
            loop.add_reader(reading, self.readable, index)
            self.trace.append(f"watch reading {index}")
        elif action < 0.55:
            self.trace.append(f"unwatch reading {index} {loop.remove_reader(reading)}")
        elif action < 0.65:
            loop.add_writer(writing, self.writable, index)
            self.trace.append(f"watch writing {index}")
        elif action < 0.7:
            loop.call_soon(self.later, "soon")
        elif action < 0.82:
            self.streams[stream][1].send(b"z" * rnd.choice([1, 100]))
            self.trace.append(f"peer sent {stream}")
        elif action < 0.86:
            self.protocols[stream].transport.resume_reading()
            self.trace.append(f"resumed {stream}")
        elif action < 0.87:
            try:
                self.trace.append(f"peer drained {len(self.streams[stream][1].recv(1 << 20))}")
            except BlockingIOError:
                self.trace.append("peer found nothing")
        elif action < 0.9:
            # a due timer, at a deadline of its own (asyncio leaves ties to its heap)
            loop.call_at(loop.time() - 1000 + rnd.random(), self.later, "timer")

    def run(self):
        for _ in range(5):
            self.act()
        for _ in range(TURNS):
            self.loop.call_soon(self.loop.stop)
            self.loop.run_forever()
            self.trace.append("turn")
            self.act()
        return self.trace

    def close(self):
        self.running = False
        for reading, writing in self.watched:
            self.loop.remove_reader(reading)
            self.loop.remove_writer(writing)
        for protocol in self.protocols:
            protocol.transport.abort()
        self.loop.run_until_complete(asyncio.sleep(0))
        for pair in self.watched + self.streams:
            for sock in pair:
                sock.close()


def run_program(loop_factory, seed):
    loop = loop_factory()
    program = IoProgram(loop, seed)
    try:
        return program.run()
    finally:
        program.close()
        loop.close()


@pytest.mark.parametrize("seed", range(40))
def test_random_io_programs_run_in_asyncio_order(seed):
    expected = run_program(LOOP_FACTORIES["asyncio"], seed)
    assert run_program(LOOP_FACTORIES["ferroloop"], seed) == expected
