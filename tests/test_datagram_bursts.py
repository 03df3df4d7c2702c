"""Datagrams that were queued together, on asyncio and ferroloop alike: one `datagram_received`
per turn, in asyncio's order among other callbacks and timers, whatever a protocol does in the
middle of a burst (pause, close), and whole whatever their size.

ferroloop takes the datagrams queued on an IP socket in one batch and hands them over one per
turn (src/net/datagram.rs); these are the behaviours that batching must not change."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

BURST = 10  # more than a batch holds, so that batch boundaries fall inside it
NUMBERED = [b"%d" % i for i in range(BURST)]


class Recorder(asyncio.DatagramProtocol):
    def __init__(self, loop, on_datagram=None):
        self.loop = loop
        self.log = []
        self.datagrams = []
        self.lost = loop.create_future()
        self.on_datagram = on_datagram

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        if self.on_datagram is not None:
            self.on_datagram(self, len(self.datagrams) - 1)

    def connection_lost(self, exc):
        self.log.append(("lost", exc))
        if not self.lost.done():
            self.lost.set_result(exc)


async def _burst(loop, payloads, on_datagram=None):
    """A UDP endpoint with a `Recorder`, and a peer that has sent it every payload before the
    loop runs again: all are queued in the kernel at once. Returns (transport, recorder, peer)."""
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Recorder(loop, on_datagram), local_addr=("127.0.0.1", 0)
    )
    # The reader is installed by a callback create_datagram_endpoint scheduled: let it run, so
    # that the burst is queued before the first read.
    await asyncio.sleep(0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    for payload in payloads:
        peer.sendto(payload, transport.get_extra_info("sockname"))
    return transport, proto, peer


async def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def test_a_burst_is_handed_over_one_datagram_per_turn(loop):
    # asyncio reads one datagram per readiness event: a callback scheduled by one datagram runs
    # before the next datagram, and a due timer after the next (I/O events join a turn before
    # due timers). Turn 1 runs d0; turn k+1 runs s(k-1), d(k), t(k-1).
    def on_datagram(proto, i):
        proto.log.append(("d", i))
        proto.loop.call_soon(proto.log.append, ("s", i))
        proto.loop.call_later(0, proto.log.append, ("t", i))

    async def main():
        transport, proto, peer = await _burst(loop, NUMBERED, on_datagram)
        await _until(lambda: ("t", BURST - 1) in proto.log)
        transport.close()
        await proto.lost
        peer.close()
        return proto.log, [data for data, _ in proto.datagrams]

    expected = [("d", 0)]
    for i in range(1, BURST):
        expected += [("s", i - 1), ("d", i), ("t", i - 1)]
    expected += [("s", BURST - 1), ("t", BURST - 1), ("lost", None)]
    log, payloads = loop.run_until_complete(main())
    assert log == expected
    assert payloads == NUMBERED


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio's datagram transport pauses from Python 3.11"
)
def test_pause_reading_mid_burst_holds_the_rest_until_resume(loop):
    # No datagram_received after pause_reading() returns, and no busy loop while paused with
    # datagrams waiting; resume_reading() hands over the rest, in order.
    def on_datagram(proto, i):
        if i == 1:
            proto.transport.pause_reading()

    async def main():
        transport, proto, peer = await _burst(loop, NUMBERED, on_datagram)
        await _until(lambda: len(proto.datagrams) == 2)
        cpu = time.process_time()
        await asyncio.sleep(0.3)
        paused_cpu = time.process_time() - cpu
        while_paused = len(proto.datagrams)
        transport.resume_reading()
        await _until(lambda: len(proto.datagrams) == BURST)
        transport.close()
        await proto.lost
        peer.close()
        return while_paused, paused_cpu, [data for data, _ in proto.datagrams]

    while_paused, paused_cpu, payloads = loop.run_until_complete(main())
    assert while_paused == 2
    assert paused_cpu < 0.1, f"the paused loop used {paused_cpu:.3f} s of CPU in 0.3 s"
    assert payloads == NUMBERED


def test_close_mid_burst_ends_reading_and_frees_the_fd(loop):
    # close() in datagram_received: no datagram after it, connection_lost(None) once. A socket
    # made afterwards (the kernel hands out the lowest free fd, likely the closed one) gets no
    # reader call for data it never received.
    def on_datagram(proto, i):
        if i == 1:
            proto.transport.close()

    async def main():
        transport, proto, peer = await _burst(loop, NUMBERED, on_datagram)
        await proto.lost
        await asyncio.sleep(0.05)
        fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fresh.bind(("127.0.0.1", 0))
        fresh.setblocking(False)
        calls = []
        loop.add_reader(fresh, calls.append, "read")
        await asyncio.sleep(0.05)
        loop.remove_reader(fresh)
        fresh.close()
        peer.close()
        return [data for data, _ in proto.datagrams], proto.log, calls

    payloads, log, calls = loop.run_until_complete(main())
    assert payloads == [b"0", b"1"]
    assert log == [("lost", None)]
    assert calls == []


def test_an_error_in_datagram_received_mid_burst_loses_no_datagram(loop):
    # The error goes to the exception handler, the transport stays open, and the next datagram
    # comes in the next turn, as asyncio's reader is called again while the socket holds data.
    def on_datagram(proto, i):
        if i in (1, 5):
            raise ValueError(f"bad datagram {i}")

    errors = []
    loop.set_exception_handler(lambda _, context: errors.append(context))

    async def main():
        transport, proto, peer = await _burst(loop, NUMBERED, on_datagram)
        await _until(lambda: len(proto.datagrams) == BURST)
        still_open = not transport.is_closing()
        transport.close()
        await proto.lost
        peer.close()
        return [data for data, _ in proto.datagrams], still_open

    payloads, still_open = loop.run_until_complete(main())
    assert payloads == NUMBERED
    assert still_open
    assert [str(context["exception"]) for context in errors] == [
        "bad datagram 1",
        "bad datagram 5",
    ]
    assert all(context["message"].startswith("Exception in callback") for context in errors)


def test_datagrams_of_every_size_in_a_burst_arrive_whole(loop):
    # The largest IPv4 datagram (65,507 bytes of payload), an empty one and sizes between, queued
    # together, each arrive as sent.
    payloads = [bytes([7]) * 65507, b"", b"x", bytes(range(256)) * 117, b"y" * 1472]

    async def main():
        transport, proto, peer = await _burst(loop, payloads)
        await _until(lambda: len(proto.datagrams) == len(payloads))
        transport.close()
        await proto.lost
        peer_addr = peer.getsockname()
        peer.close()
        return proto.datagrams, peer_addr

    datagrams, peer_addr = loop.run_until_complete(main())
    assert [data for data, _ in datagrams] == payloads
    assert {addr for _, addr in datagrams} == {peer_addr}


def test_unix_datagrams_larger_than_an_ip_datagram_arrive_whole(loop, tmp_path):
    # A Unix datagram can exceed any IP datagram; asyncio reads up to 256 KiB of it.
    payloads = [b"a" * 100_000, b"b", b"c" * 70_000]

    async def main():
        path = str(tmp_path / "dgram.sock")
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), local_addr=path, family=socket.AF_UNIX
        )
        await asyncio.sleep(0)
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for payload in payloads:
            peer.sendto(payload, path)
        await _until(lambda: len(proto.datagrams) == len(payloads))
        transport.close()
        await proto.lost
        peer.close()
        return [data for data, _ in proto.datagrams]

    assert loop.run_until_complete(main()) == payloads
