"""The first try of `sock_recv`, `sock_recv_into` and `sock_recvfrom`: asyncio calls the socket's
method and takes BlockingIOError for "not ready". ferroloop makes that call natively on a plain
non-blocking `socket.socket` (src/net/sock_first_try.rs); anything else must still reach the
method, with the method's results and errors. The checks before the try (no SSLSocket; in debug
mode, a non-blocking socket) are native too (`_sock_try`), and must raise what asyncio raises."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys

import ferroloop
import pytest
from conftest import nonblocking_pair

needs_sock_recvfrom = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="loop.sock_recvfrom is new in Python 3.11"
)


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


# asyncssh's tuntap tests replace `socket.socket` with a function, and a first read made while
# they do must still find the class: in a process of its own, so that it is the first.
FIRST_READ_UNDER_A_PATCHED_SOCKET_CLASS = """
import asyncio, socket, sys
from unittest import mock
import ferroloop

loops = {"asyncio": asyncio.SelectorEventLoop, "ferroloop": ferroloop.new_event_loop}
new_loop = loops[sys.argv[1]]
real_socket = socket.socket
stream = socket.socketpair()
datagram = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
for sock in (*stream, *datagram):
    sock.setblocking(False)


async def main(loop):
    stream[1].send(b"stream")
    datagram[1].send(b"datagram")
    with mock.patch("socket.socket", lambda *args, **kwargs: real_socket(*args, **kwargs)):
        got = [await loop.sock_recv(stream[0], 3)]
        buf = bytearray(3)
        got.append((await loop.sock_recv_into(stream[0], buf), bytes(buf)))
        if sys.version_info >= (3, 11):
            got.append((await loop.sock_recvfrom(datagram[0], 100))[0])
        else:
            got.append(await loop.sock_recv(datagram[0], 100))
    return got


loop = new_loop()
print(loop.run_until_complete(main(loop)))
loop.close()
for sock in (*stream, *datagram):
    sock.close()
"""


def test_a_first_read_while_socket_socket_is_patched_finds_the_class(loop_factory):
    name = "ferroloop" if loop_factory is ferroloop.new_event_loop else "asyncio"
    out = subprocess.run(
        [sys.executable, "-c", FIRST_READ_UNDER_A_PATCHED_SOCKET_CLASS, name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stderr == ""
    assert out.stdout == "[b'str', (3, b'eam'), b'datagram']\n"


def test_a_socket_with_a_timeout_reads_through_recv_with_its_timeout(loop):
    """asyncio (debug mode off) calls `recv` on such a socket, which waits up to its timeout."""
    loop.set_debug(False)  # debug mode refuses the socket (PYTHONDEVMODE turns it on)

    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.05)
            with pytest.raises(socket.timeout):  # TimeoutError from 3.10 on
                await loop.sock_recv(a, 16)
            b.send(b"late")
            assert await loop.sock_recv(a, 16) == b"late"

    loop.run_until_complete(main())


def _datagram_pair(family, address):
    """Two bound non-blocking datagram sockets of `family`."""
    a, b = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
    for sock in (a, b):
        sock.bind(address)
        sock.setblocking(False)
    return a, b


@needs_sock_recvfrom
@pytest.mark.parametrize(
    "family, address", [(socket.AF_INET, ("127.0.0.1", 0)), (socket.AF_INET6, ("::1", 0))]
)
def test_recvfrom_gives_the_datagram_and_its_source_as_the_method_does(loop, family, address):
    try:
        a, b = _datagram_pair(family, address)
    except OSError as exc:
        pytest.skip(f"no {family.name} loopback here: {exc}")

    async def main():
        with a, b:
            b.sendto(b"first", a.getsockname())
            assert await loop.sock_recvfrom(a, 100) == (b"first", b.getsockname())
            # Cut to the length asked for, the rest of the datagram gone, as recvfrom does.
            b.sendto(b"truncated", a.getsockname())
            assert await loop.sock_recvfrom(a, 5) == (b"trunc", b.getsockname())
            # Nothing there: the call waits for the next datagram.
            loop.call_later(0.01, b.sendto, b"later", a.getsockname())
            assert await loop.sock_recvfrom(a, 100) == (b"later", b.getsockname())
            b.sendto(b"direct", a.getsockname())
            await asyncio.sleep(0.01)
            return a.recvfrom(100), b.getsockname()

    direct, source = loop.run_until_complete(main())
    assert direct == (b"direct", source)


@needs_sock_recvfrom
def test_recvfrom_on_unix_datagram_sockets_gives_the_methods_addresses(loop, tmp_path):
    async def main():
        named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        named.bind(str(tmp_path / "named"))
        unnamed, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        abstract.bind(b"\0ferroloop-first-try-%d" % id(abstract))
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(tmp_path / "receiver"))
        with named, unnamed, peer, abstract, receiver:
            for sock in (named, unnamed, peer, abstract, receiver):
                sock.setblocking(False)
            results = []
            for sender in (named, abstract):
                sender.sendto(b"from", receiver.getsockname())
                results.append(await loop.sock_recvfrom(receiver, 100))
                sender.sendto(b"again", receiver.getsockname())
                await asyncio.sleep(0.01)
                results.append(receiver.recvfrom(100))
            peer.send(b"pair")
            results.append(await loop.sock_recvfrom(unnamed, 100))
            peer.send(b"pair again")
            results.append(unnamed.recvfrom(100))
            return results, named.getsockname(), abstract.getsockname()

    results, named, abstract = loop.run_until_complete(main())
    assert results[0] == (b"from", named) and results[1] == (b"again", named)
    assert results[2] == (b"from", abstract) and results[3] == (b"again", abstract)
    assert results[4][0] == b"pair" and results[5][0] == b"pair again"
    assert results[4][1] == results[5][1]


@needs_sock_recvfrom
def test_recvfrom_bad_lengths_get_the_methods_answers(loop):
    async def main():
        a, b = _datagram_pair(socket.AF_INET, ("127.0.0.1", 0))
        with a, b:
            with pytest.raises(ValueError, match="negative buffersize in recvfrom"):
                await loop.sock_recvfrom(a, -1)
            with pytest.raises(TypeError, match="integer"):
                await loop.sock_recvfrom(a, 1.5)
            b.sendto(b"for a zero-length read", a.getsockname())
            await asyncio.sleep(0.01)
            return await asyncio.wait_for(loop.sock_recvfrom(a, 0), 5), b.getsockname()

    result, source = loop.run_until_complete(main())
    assert result == (b"", source)


def test_the_checks_before_the_first_try_raise_what_asyncio_raises(loop):
    ssl = pytest.importorskip("ssl")

    async def main():
        a, b = socket.socketpair()
        with a, b:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            ssl_sock = context.wrap_socket(socket.socket(), do_handshake_on_connect=False)
            with ssl_sock:
                with pytest.raises(TypeError, match="^Socket cannot be of type SSLSocket$"):
                    await loop.sock_recv(ssl_sock, 1)
                with pytest.raises(TypeError, match="^Socket cannot be of type SSLSocket$"):
                    await loop.sock_sendall(ssl_sock, b"x")
            loop.set_debug(True)
            try:
                with pytest.raises(ValueError, match="^the socket must be non-blocking$"):
                    await loop.sock_recv(a, 1)
                a.setblocking(False)
                b.send(b"ok")
                return await loop.sock_recv(a, 2)
            finally:
                loop.set_debug(False)

    assert loop.run_until_complete(main()) == b"ok"


def test_the_ssl_check_reads_ssl_sslsocket_at_each_call(loop, monkeypatch):
    """asyncio's `_check_ssl_socket` reads `base_events.ssl.SSLSocket` at each call, so a class
    patched in after the first call is refused, and with `base_events.ssl` None (CPython built
    without ssl) none is."""
    ssl = pytest.importorskip("ssl")
    from asyncio import base_events

    class PretendSSLSocket(socket.socket):
        pass

    async def main():
        a, b = nonblocking_pair()
        with a, b:
            b.send(b"1")
            first = await loop.sock_recv(a, 1)
        pretend = PretendSSLSocket()
        pretend.setblocking(False)
        with pretend:
            monkeypatch.setattr(ssl, "SSLSocket", PretendSSLSocket)
            with pytest.raises(TypeError, match="^Socket cannot be of type SSLSocket$"):
                await loop.sock_recv(pretend, 1)
            monkeypatch.setattr(base_events, "ssl", None)
            with pytest.raises(OSError):  # not connected: the read itself fails
                await loop.sock_recv(pretend, 1)
        return first

    assert loop.run_until_complete(main()) == b"1"
