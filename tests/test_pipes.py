"""The read pipe transport, on asyncio and ferroloop alike: callback order through EOF, reads
larger than one read buffer, pausing, and a socket end used as a pipe."""

from __future__ import annotations

import asyncio
import os
import socket

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
