"""The pipe transports, on asyncio and ferroloop alike: callback order through EOF, reads larger
than one read buffer, pausing, a socket end and a terminal used as pipes; writes beyond the pipe's
capacity with flow control, a closed reader, and asyncio's check of what is written."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tty

import pytest
from test_transports import Recorder


def test_data_then_eof_then_connection_lost(loop):
    async def main():
        r, w = os.pipe()
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), os.fdopen(r, "rb"))
        os.write(w, b"first")
        await asyncio.sleep(0.01)
        os.write(w, b"second")
        os.close(w)
        exc = await asyncio.wait_for(proto.lost, 10)
        return bytes(proto.data), proto.events[0], proto.events[-2:], exc, transport.is_closing()

    data, first, last, exc, closing = loop.run_until_complete(main())
    assert data == b"firstsecond"
    assert (first, last, exc, closing) == ("made", ["eof", "lost"], None, True)


def test_more_than_a_read_buffer_then_eof(loop):
    # A socket end is a valid "pipe"; its buffer holds more than one 256 KiB read.
    async def main():
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        a.setblocking(False)
        payload = os.urandom(1 << 20)
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), b)
        transport.pause_reading()
        await loop.sock_sendall(a, payload)
        a.close()
        await asyncio.sleep(0.05)
        paused_data = len(proto.data)
        transport.resume_reading()
        await asyncio.wait_for(proto.lost, 10)
        return paused_data, bytes(proto.data) == payload, proto.events[-2:]

    assert loop.run_until_complete(main()) == (0, True, ["eof", "lost"])


def test_subprocess_output_larger_than_the_pipe(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "head", "-c", str(3 << 20), "/dev/zero", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return len(out), set(out), proc.returncode

    assert loop.run_until_complete(main()) == (3 << 20, {0}, 0)


class WriteRecorder(asyncio.Protocol):
    def __init__(self, loop):
        self.paused = self.resumed = 0
        self.lost = loop.create_future()

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_write_pipe_buffers_beyond_the_pipe_and_drains(loop):
    async def main():
        r, w = os.pipe()
        transport, proto = await loop.connect_write_pipe(
            lambda: WriteRecorder(loop), os.fdopen(w, "wb")
        )
        payload = os.urandom(1 << 20)
        transport.write(payload[:1000])
        transport.write(bytearray(payload[1000:500_000]))
        transport.write(memoryview(payload)[500_000:])
        buffered = transport.get_write_buffer_size()
        received = bytearray()
        while len(received) < len(payload):
            received += await loop.run_in_executor(None, os.read, r, 1 << 20)
        transport.close()
        exc = await asyncio.wait_for(proto.lost, 10)
        os.close(r)
        return buffered > 0, bytes(received) == payload, proto.paused, proto.resumed, exc

    assert loop.run_until_complete(main()) == (True, True, 1, 1, None)


def test_write_pipe_to_a_closed_reader(loop, caplog):
    async def main():
        r, w = os.pipe()
        transport, proto = await loop.connect_write_pipe(
            lambda: WriteRecorder(loop), os.fdopen(w, "wb")
        )
        os.close(r)
        transport.write(b"nobody reads this")
        exc = await asyncio.wait_for(proto.lost, 10)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(6):
                transport.write(b"more")
        warnings = [rec.getMessage() for rec in caplog.records if rec.name == "asyncio"]
        return type(exc), warnings

    exc_type, warnings = loop.run_until_complete(main())
    assert exc_type is BrokenPipeError
    assert warnings == ["pipe closed by peer or os.write(pipe, data) raised exception."] * 2


def test_write_pipe_refuses_str_as_asyncio_does(loop):
    async def main():
        r, w = os.pipe()
        transport, proto = await loop.connect_write_pipe(
            lambda: WriteRecorder(loop), os.fdopen(w, "wb")
        )
        try:
            with pytest.raises(AssertionError):
                transport.write("text")
        finally:
            transport.close()
            os.close(r)

    if sys.flags.optimize:
        pytest.skip("asyncio checks with an assert, which -O removes")
    loop.run_until_complete(main())


def test_a_terminal_is_a_pipe_both_ways(loop):
    # A pseudo-terminal's ends are character devices, which asyncio's pipe transports take.
    async def main():
        master, slave = os.openpty()
        tty.setraw(slave)
        reading, proto = await loop.connect_read_pipe(
            lambda: Recorder(loop), os.fdopen(master, "rb", 0)
        )
        writing, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(slave, "wb", 0))
        writing.write(b"through a tty")
        while len(proto.data) < 13:
            await asyncio.sleep(0.01)
        writing.close()
        reading.close()
        await asyncio.wait_for(proto.lost, 10)
        return bytes(proto.data)

    assert loop.run_until_complete(main()) == b"through a tty"


def test_pipe_transports_carry_their_pipe_and_are_asyncio_s_kinds(loop):
    async def main():
        r, w = os.pipe()
        read_file, write_file = os.fdopen(r, "rb", 0), os.fdopen(w, "wb", 0)
        reading, _ = await loop.connect_read_pipe(asyncio.Protocol, read_file)
        writing, _ = await loop.connect_write_pipe(asyncio.Protocol, write_file)
        found = (
            reading.get_extra_info("pipe") is read_file,
            writing.get_extra_info("pipe") is write_file,
            isinstance(reading, asyncio.ReadTransport),
            isinstance(writing, asyncio.WriteTransport),
            reading.get_extra_info("nothing such", "default"),
        )
        writing.close()
        reading.close()
        await asyncio.sleep(0)
        return found

    assert loop.run_until_complete(main()) == (True, True, True, True, "default")
