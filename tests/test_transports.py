"""Transport and protocol contracts (issue 3's list), on asyncio and ferroloop alike."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest


class Recorder(asyncio.Protocol):
    """Records every protocol callback in order."""

    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.lost = loop.create_future()
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.events.append("data")
        self.data.extend(data)

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


async def _pair(loop, protocol_factory=None):
    """A connected (client transport, client protocol, server socket) triple."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    transport, protocol = await loop.create_connection(
        protocol_factory or (lambda: Recorder(loop)), *listener.getsockname()
    )
    peer, _ = await accept
    peer.setblocking(False)
    listener.close()
    return transport, protocol, peer


def test_callback_order_and_connection_lost_after_close(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        await loop.sock_sendall(peer, b"hello")
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return proto.events, bytes(proto.data)

    events, data = loop.run_until_complete(main())
    assert data == b"hello"
    assert events[0] == "made" and events[-2:] == ["eof", "lost"]


def test_close_calls_connection_lost_soon_not_synchronously(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.close()
        assert transport.is_closing()
        synchronous = "lost" in proto.events
        exc = await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return synchronous, exc

    assert loop.run_until_complete(main()) == (False, None)


def test_pause_reading_is_exact(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        await loop.sock_sendall(peer, b"a")
        while not proto.data:
            await asyncio.sleep(0.001)
        transport.pause_reading()
        # `_paused` is private, but 3.9 and 3.10's sslproto reads it from the transport.
        assert not transport.is_reading() and transport._paused
        before = len(proto.events)
        await loop.sock_sendall(peer, b"b" * 1000)
        await asyncio.sleep(0.05)
        stalled = len(proto.events) == before
        transport.resume_reading()
        assert transport.is_reading() and not transport._paused
        while len(proto.data) < 1001:
            await asyncio.sleep(0.001)
        transport.close()
        peer.close()
        return stalled

    assert loop.run_until_complete(main()) is True


def test_a_paused_transport_learns_of_data_and_hang_up_only_after_resume(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.pause_reading()
        await loop.sock_sendall(peer, b"last")
        peer.close()
        await asyncio.sleep(0.05)
        while_paused = list(proto.events)
        transport.resume_reading()
        exc = await asyncio.wait_for(proto.lost, 10)
        return while_paused, proto.events, bytes(proto.data), exc

    while_paused, events, data, exc = loop.run_until_complete(main())
    assert while_paused == ["made"]
    assert events == ["made", "data", "eof", "lost"] and data == b"last" and exc is None


def test_the_number_of_a_transport_closed_while_paused_serves_the_next_connection(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        fd = transport.get_extra_info("socket").fileno()
        transport.pause_reading()
        transport.close()
        await asyncio.wait_for(proto.lost, 10)
        peer.close()
        transport, proto, peer = await _pair(loop)
        reused = transport.get_extra_info("socket").fileno() == fd
        await loop.sock_sendall(peer, b"ping")
        while proto.data != b"ping":
            await asyncio.sleep(0.001)
        transport.write(b"pong")
        echoed = await loop.sock_recv(peer, 4)
        transport.close()
        peer.close()
        return reused, echoed

    reused, echoed = loop.run_until_complete(main())
    assert reused, "the next socket takes the lowest free number"
    assert echoed == b"pong"


def test_write_buffer_water_marks(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        chunk = b"x" * 65536
        while not proto.paused:
            transport.write(chunk)
        assert transport.get_write_buffer_size() > 64 * 1024
        received = 0
        while not proto.resumed:
            received += len(await loop.sock_recv(peer, 1 << 20))
        assert transport.get_write_buffer_size() <= 16 * 1024
        transport.close()
        peer.close()
        return proto.paused, proto.resumed

    assert loop.run_until_complete(main()) == (1, 1)


def test_write_eof_and_writelines(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        assert transport.can_write_eof()
        transport.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        transport.write_eof()
        with pytest.raises(RuntimeError, match="Cannot call write\\(\\) after write_eof\\(\\)"):
            transport.write(b"late")
        got = b""
        while chunk := await loop.sock_recv(peer, 100):
            got += chunk
        transport.close()
        peer.close()
        return got

    assert loop.run_until_complete(main()) == b"abcdef"


# 3.14 rewords the stream transports' check (and not sendto's).
WRITE_REFUSES_STR = (
    "data argument must be a bytes, bytearray, or memoryview object, not 'str'"
    if sys.version_info >= (3, 14)
    else "data argument must be a bytes-like object, not 'str'"
)


def test_write_rejects_str(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        with pytest.raises(TypeError) as refused:
            transport.write("text")
        assert str(refused.value) == WRITE_REFUSES_STR
        transport.close()
        peer.close()

    loop.run_until_complete(main())


def test_set_protocol_mid_stream(loop):
    async def main():
        transport, first, peer = await _pair(loop)
        await loop.sock_sendall(peer, b"one")
        while not first.data:
            await asyncio.sleep(0.001)
        second = Recorder(loop)
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        await loop.sock_sendall(peer, b"two")
        while not second.data:
            await asyncio.sleep(0.001)
        transport.close()
        peer.close()
        return bytes(first.data), bytes(second.data)

    assert loop.run_until_complete(main()) == (b"one", b"two")


def test_exception_in_data_received_closes_with_asyncio_message(loop):
    class Failing(Recorder):
        def data_received(self, data):
            raise ValueError("protocol bug")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        transport, proto, peer = await _pair(loop, lambda: Failing(loop))
        await loop.sock_sendall(peer, b"x")
        exc = await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, ValueError)
    assert contexts[0]["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(contexts[0]["exception"], ValueError)


def test_buffered_protocol_reads_into_its_buffer(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(10)
            self.got = bytearray()
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.got.extend(self.buf[:nbytes])

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        transport, proto, peer = await _pair(loop, Buffered)
        await loop.sock_sendall(peer, b"0123456789" * 100)
        peer.close()
        await asyncio.wait_for(proto.lost, 10)
        return bytes(proto.got)

    assert loop.run_until_complete(main()) == b"0123456789" * 100


def test_peer_closing_mid_write_reports_the_loss(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # RST
        for _ in range(200):
            if transport.is_closing():
                break
            transport.write(b"x" * 65536)
            await asyncio.sleep(0.001)
        return await asyncio.wait_for(proto.lost, 10)

    exc = loop.run_until_complete(main())
    assert exc is None or isinstance(exc, (ConnectionResetError, BrokenPipeError))


def test_server_close_keeps_accepted_connections(loop):
    async def main():
        async def echo(reader, writer):
            while data := await reader.read(100):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        server.close()
        assert not server.is_serving()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"still here")
        data = await reader.readexactly(10)
        writer.close()
        await writer.wait_closed()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"still here"


def test_abstract_unix_socket(loop):
    name = f"\0ferroloop-test-{os.getpid()}-{id(loop)}"

    async def main():
        async def greet(reader, writer):
            writer.write(b"hi")
            writer.close()

        server = await asyncio.start_unix_server(greet, name)
        reader, writer = await asyncio.open_unix_connection(name)
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"hi"


@pytest.mark.skipif(sys.version_info < (3, 13), reason="cleanup_socket is new in Python 3.13")
@pytest.mark.parametrize("cleanup", [True, False])
def test_unix_server_close_removes_its_socket_file(loop, tmp_path, cleanup):
    path = str(tmp_path / "server.sock")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=cleanup)
        present = os.path.exists(path)
        server.close()
        await server.wait_closed()
        return present, os.path.exists(path)

    assert loop.run_until_complete(main()) == (True, not cleanup)


def test_read_pipe_from_a_subprocess(loop):
    async def main():
        r, w = os.pipe()
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * 100000)"],
            stdout=w,
        )
        os.close(w)
        proto = Recorder(loop)
        transport, _ = await loop.connect_read_pipe(lambda: proto, os.fdopen(r, "rb", 0))
        await asyncio.wait_for(proto.lost, 20)
        child.wait()
        return len(proto.data)

    assert loop.run_until_complete(main()) == 100000


def test_pipes_refuse_regular_files(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_read_pipe(asyncio.Protocol, f)

    loop.run_until_complete(main())


def test_sendfile_of_50_mb(loop, tmp_path):
    path = tmp_path / "blob"
    blob = os.urandom(1024 * 1024) * 50
    path.write_bytes(blob)

    async def main():
        transport, proto, peer = await _pair(loop)
        received = bytearray()

        async def drain():
            while len(received) < len(blob):
                received.extend(await loop.sock_recv(peer, 1 << 20))

        with open(path, "rb") as f:
            sent, _ = await asyncio.gather(loop.sendfile(transport, f), drain())
        transport.close()
        peer.close()
        return sent, bytes(received) == blob

    assert loop.run_until_complete(main()) == (len(blob), True)


def test_a_thousand_concurrent_connections(loop):
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readexactly(4))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]

        async def client(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(i.to_bytes(4, "big"))
            data = await reader.readexactly(4)
            writer.close()
            await writer.wait_closed()
            return int.from_bytes(data, "big")

        results = await asyncio.gather(*(client(i) for i in range(1000)))
        server.close()
        await server.wait_closed()
        return results

    assert loop.run_until_complete(main()) == list(range(1000))


def test_aiohttp_server_and_client(loop):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def main():
        async def hello(request):
            return web.json_response({"path": request.path, "n": int(request.query["n"])})

        app = web.Application()
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with aiohttp.ClientSession() as session:
            results = []
            for n in range(20):
                async with session.get(f"http://127.0.0.1:{port}/hello?n={n}") as resp:
                    results.append((await resp.json())["n"])
        await runner.cleanup()
        return results

    assert loop.run_until_complete(main()) == list(range(20))
