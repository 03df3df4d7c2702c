"""The first try of `sock_recv` and `sock_recv_into`: asyncio calls the socket's method and takes
BlockingIOError for "not ready". ferroloop makes that call natively on a plain non-blocking
`socket.socket` (src/net/sock_first_try.rs); anything else must still reach the method, with the
method's results and errors."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
from conftest import nonblocking_pair


def test_data_already_there_comes_back_at_once(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            b.send(b"hello")
            assert await loop.sock_recv(a, 3) == b"hel"
            buf = bytearray(8)
            assert await loop.sock_recv_into(a, buf) == 2
            assert buf[:2] == b"lo"
            b.send(b"world")
            view = memoryview(bytearray(10))[2:6]
            assert await loop.sock_recv_into(a, view) == 4
            assert view.tobytes() == b"worl"

    loop.run_until_complete(main())


def test_a_read_longer_than_the_loops_buffer_gets_everything_there(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            b.setblocking(True)
            loop.call_soon(b.sendall, b"x" * 100)
            assert await loop.sock_recv(a, 1 << 20) == b"x" * 100

    loop.run_until_complete(main())


def test_zero_length_reads_return_at_once_as_the_methods_do(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            assert await asyncio.wait_for(loop.sock_recv(a, 0), 5) == b""
            assert await asyncio.wait_for(loop.sock_recv_into(a, bytearray()), 5) == 0

    loop.run_until_complete(main())


def test_bad_arguments_get_the_methods_errors(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            with pytest.raises(ValueError, match="negative buffersize in recv"):
                await loop.sock_recv(a, -1)
            with pytest.raises(TypeError, match="integer"):
                await loop.sock_recv(a, 1.5)
            with pytest.raises(TypeError, match="read-write bytes-like object"):
                await loop.sock_recv_into(a, b"immutable")

    loop.run_until_complete(main())


def test_a_reset_connection_raises_what_recv_raises(loop):
    async def main():
        server = socket.create_server(("127.0.0.1", 0))
        with server:
            client = socket.create_connection(server.getsockname())
            conn, _ = server.accept()
            with client, conn:
                client.send(b"unread")
                # Closing with unread data, lingering 0, sends a reset.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                conn.close()
                client.setblocking(False)
                await asyncio.sleep(0.05)
                with pytest.raises(ConnectionResetError) as caught:
                    await loop.sock_recv(client, 16)
                assert caught.value.errno == errno.ECONNRESET

    loop.run_until_complete(main())


def test_a_closed_socket_raises_what_recv_raises(loop):
    async def main():
        a, b = nonblocking_pair()
        with b:
            a.close()
            with pytest.raises(OSError) as caught:
                await loop.sock_recv(a, 16)
            assert caught.value.errno == errno.EBADF
            with pytest.raises(OSError) as caught:
                await loop.sock_recv_into(a, bytearray(4))
            assert caught.value.errno == errno.EBADF

    loop.run_until_complete(main())


class CountingSocket(socket.socket):
    """A socket subclass whose reads are its own."""

    def recv(self, n, *args):
        self.calls = getattr(self, "calls", 0) + 1
        return b"<" + super().recv(n, *args) + b">"

    def recv_into(self, buf, *args):
        self.calls = getattr(self, "calls", 0) + 1
        n = super().recv_into(buf, *args)
        buf[0:1] = b"!"
        return n


def test_a_socket_subclass_is_read_through_its_own_methods(loop):
    async def main():
        a, b = socket.socketpair()
        sub = CountingSocket(a.family, a.type, a.proto, fileno=a.detach())
        sub.setblocking(False)
        b.setblocking(False)
        with sub, b:
            loop.call_later(0.01, b.send, b"abc")
            assert await loop.sock_recv(sub, 16) == b"<abc>"
            b.send(b"xyz")
            buf = bytearray(3)
            assert await loop.sock_recv_into(sub, buf) == 3
            assert buf == b"!yz"
            # Each first try and each retry was a call of the subclass's method.
            assert sub.calls >= 2

    loop.run_until_complete(main())


def test_a_patched_socket_class_is_read_through_the_patch(loop):
    seen = []
    original = socket.socket.recv

    def recv(self, n, *args):
        seen.append(n)
        return original(self, n, *args)

    async def main():
        a, b = nonblocking_pair()
        with a, b:
            b.send(b"data")
            assert await loop.sock_recv(a, 7) == b"data"

    assert "recv" not in vars(socket.socket), "socket.socket inherits recv from _socket.socket"
    socket.socket.recv = recv
    try:
        loop.run_until_complete(main())
    finally:
        del socket.socket.recv
    assert seen == [7]


def test_a_socket_with_a_timeout_reads_through_recv_with_its_timeout(loop):
    """asyncio (debug mode off) calls `recv` on such a socket, which waits up to its timeout."""

    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.05)
            with pytest.raises(socket.timeout):  # TimeoutError from 3.10 on
                await loop.sock_recv(a, 16)
            b.send(b"late")
            assert await loop.sock_recv(a, 16) == b"late"

    loop.run_until_complete(main())
