"""The Server object's life and the connection and endpoint options issue 3 names, on asyncio and
ferroloop alike: start_serving, serve_forever, is_serving, get_loop, the async context manager,
wait_closed, close_clients/abort_clients and keep_alive (3.13), a host list, reuse_address,
reuse_port, sock=, happy_eyeballs_delay and interleave, all_errors (3.12), create_unix_connection
and create_unix_server with protocols and a stale socket file, allow_broadcast, the sock_* calls
into buffers and from files with the checks asyncio makes of their sockets, and sendfile's
fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys

import pytest
from conftest import echo_handler, free_port

# The server ends of the connections the tests make, each resolved once its transport is closed:
# each test waits for them before its loop closes (wait_closed() waits for them only from 3.12.1).
SERVED: list = []


def _served(handler):
    """A start_server callback running `handler`, whose connection is put in SERVED."""

    async def serve(reader, writer):
        served = asyncio.get_running_loop().create_future()
        SERVED.append(served)
        try:
            await handler(reader, writer)
        except ConnectionResetError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionResetError):
                await writer.wait_closed()
            served.set_result(None)

    return serve


_echo = _served(echo_handler)


FLOOD = 64 * 1024 * 1024


@_served
async def _flood(reader, writer):
    """Writes more than the sockets between the two ends hold, then waits for the client's EOF."""
    writer.write(bytes(FLOOD))
    await reader.read()


@pytest.fixture(autouse=True)
def served_to_the_end(loop):
    SERVED.clear()
    yield
    if SERVED and not loop.is_closed():
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*SERVED), 5))


def _port(server) -> int:
    return server.sockets[0].getsockname()[1]


async def _round_trip(port):
    return await _echoed(asyncio.open_connection("127.0.0.1", port))


async def _echoed(connecting, data=b"ping"):
    """Sends `data` over the stream `connecting` opens, reads it back and closes."""
    reader, writer = await connecting
    writer.write(data)
    echoed = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return echoed


def test_start_serving_false_listens_only_once_asked(loop):
    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0, start_serving=False)
        async with server:
            assert server.get_loop() is loop
            assert not server.is_serving()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", _port(server))
            await server.start_serving()
            assert server.is_serving()
            assert await _round_trip(_port(server)) == b"ping"
        assert not server.is_serving()
        assert server.sockets == ()

    loop.run_until_complete(main())


def test_serve_forever_serves_until_cancelled_then_closes_the_server(loop):
    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0, start_serving=False)
        port = _port(server)
        serving = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        assert await _round_trip(port) == b"ping"
        with pytest.raises(RuntimeError, match="is already being awaited on serve_forever"):
            await server.serve_forever()
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.skipif(
    sys.version_info < (3, 12, 1), reason="wait_closed waits for connections from 3.12.1"
)
def test_wait_closed_waits_for_the_connections_to_end(loop):
    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        server.close()
        closed = asyncio.ensure_future(server.wait_closed())
        writer.write(b"still served")
        assert await reader.readexactly(12) == b"still served"
        assert not closed.done()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(closed, 5)

    loop.run_until_complete(main())


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="close_clients and abort_clients are new in 3.13"
)
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_and_abort_clients_end_the_live_connections(loop, how):
    async def main():
        server = await asyncio.start_server(_flood, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        received = len(await reader.readexactly(1))
        server.close()
        getattr(server, how)()
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
        await asyncio.wait_for(server.wait_closed(), 5)
        writer.close()
        return received

    received = loop.run_until_complete(main())
    # close_clients() closes each transport, which sends what it holds first; abort_clients()
    # drops it, and the client gets what the sockets held, then the end.
    if how == "close_clients":
        assert received == FLOOD
    else:
        assert 0 < received < FLOOD


@pytest.mark.skipif(sys.version_info < (3, 13), reason="keep_alive is new in 3.13")
def test_keep_alive_is_set_on_the_listening_socket(loop):
    async def main():
        plain = await asyncio.start_server(_echo, "127.0.0.1", 0)
        kept = await asyncio.start_server(_echo, "127.0.0.1", 0, keep_alive=True)
        async with plain, kept:
            option = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            return plain.sockets[0].getsockopt(*option), kept.sockets[0].getsockopt(*option)

    assert loop.run_until_complete(main()) == (0, 1)


def test_reuse_port_lets_two_servers_share_a_port(loop):
    async def main():
        first = await asyncio.start_server(_echo, "127.0.0.1", 0, reuse_port=True)
        port = _port(first)
        second = await asyncio.start_server(_echo, "127.0.0.1", port, reuse_port=True)
        async with first, second:
            assert _port(second) == port
            assert await _round_trip(port) == b"ping"
            with pytest.raises(OSError) as refused:
                await asyncio.start_server(_echo, "127.0.0.1", port)
            return refused.value.errno

    assert loop.run_until_complete(main()) == errno.EADDRINUSE


def _addresses(loop, *hosts_and_ports):
    """Makes the loop resolve any name to these addresses, in this order."""

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        infos = []
        for address in hosts_and_ports:
            af = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            infos.append((af, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address))
        return infos

    loop.getaddrinfo = getaddrinfo


def test_happy_eyeballs_moves_on_from_an_address_that_refuses(loop):
    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with server:
            port = _port(server)
            _addresses(loop, ("::1", port, 0, 0), ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(
                "anywhere.example", port, happy_eyeballs_delay=0.05, interleave=1
            )
            peer = writer.get_extra_info("peername")
            writer.close()
            await writer.wait_closed()
            return peer, port

    peer, port = loop.run_until_complete(main())
    assert peer == ("127.0.0.1", port)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in 3.12")
def test_all_errors_raises_every_address_error_as_a_group(loop):
    port = free_port()

    async def main():
        _addresses(loop, ("127.0.0.1", port), ("127.0.0.1", port))
        with pytest.raises(Exception) as group:
            await loop.create_connection(
                asyncio.Protocol, "anywhere.example", port, all_errors=True
            )
        return type(group.value).__name__, [type(error) for error in group.value.exceptions]

    assert loop.run_until_complete(main()) == (
        "ExceptionGroup",
        [ConnectionRefusedError, ConnectionRefusedError],
    )


def test_unix_connection_and_server_with_protocols(loop, tmp_path):
    path = str(tmp_path / "protocols.sock")

    server_ends = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.lost = loop.create_future()
            server_ends.append(self.lost)

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    class Client(asyncio.Protocol):
        def __init__(self):
            self.received = loop.create_future()

        def data_received(self, data):
            self.received.set_result(data)

    async def main():
        server = await loop.create_unix_server(Echo, path)
        async with server:
            transport, client = await loop.create_unix_connection(Client, path)
            transport.write(b"over unix")
            data = await client.received
            peer = transport.get_extra_info("peername")
            transport.close()
            # the server's end sees EOF and closes (an Echo does not keep it open)
            assert await asyncio.wait_for(server_ends[0], 5) is None
            return data, peer

    assert loop.run_until_complete(main()) == (b"over unix", path)


def test_allow_broadcast_and_reuse_port_on_datagram_endpoints(loop):
    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol,
            local_addr=("127.0.0.1", 0),
            allow_broadcast=True,
            reuse_port=True,
        )
        sock = transport.get_extra_info("socket")
        options = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT),
        )
        port = transport.get_extra_info("sockname")[1]
        second, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", port), reuse_port=True
        )
        transport.close()
        second.close()
        return options

    assert loop.run_until_complete(main()) == (1, 1)


def test_sock_recv_into_fills_the_callers_buffer(loop):
    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            buffer = bytearray(10)
            receiving = asyncio.ensure_future(loop.sock_recv_into(b, buffer))
            await loop.sock_sendall(a, b"abcdef")
            return await receiving, bytes(buffer)

    assert loop.run_until_complete(main()) == (6, b"abcdef\0\0\0\0")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="sock_recvfrom_into is new in 3.11")
def test_sock_recvfrom_into_fills_the_callers_buffer_and_names_the_sender(loop):
    async def main():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.setblocking(False)
            rx.bind(("127.0.0.1", 0))
            tx.bind(("127.0.0.1", 0))
            buffer = bytearray(10)
            receiving = asyncio.ensure_future(loop.sock_recvfrom_into(rx, buffer))
            await asyncio.sleep(0)
            tx.sendto(b"datagram", rx.getsockname())
            nbytes, sender = await receiving
            return nbytes, bytes(buffer[:nbytes]), sender == tx.getsockname()

    assert loop.run_until_complete(main()) == (8, b"datagram", True)


def test_sock_sendfile_sends_the_file_from_an_offset(loop, tmp_path):
    path = tmp_path / "payload.bin"
    payload = bytes(range(256)) * 4096
    path.write_bytes(payload)

    async def main():
        a, b = socket.socketpair()
        with a, b, open(path, "rb") as f:
            a.setblocking(False)
            b.setblocking(False)

            async def receive(n):
                data = bytearray()
                while len(data) < n:
                    data += await loop.sock_recv(b, 65536)
                return bytes(data)

            receiving = asyncio.ensure_future(receive(len(payload) - 1000))
            sent = await loop.sock_sendfile(a, f, offset=1000)
            return sent, await receiving, f.tell()

    sent, received, position = loop.run_until_complete(main())
    assert sent == len(payload) - 1000
    assert received == payload[1000:]
    assert position == len(payload)


def test_servers_and_connections_on_sockets_the_caller_made(loop):
    async def main():
        listening = socket.create_server(("127.0.0.1", 0))
        server = await asyncio.start_server(_echo, sock=listening)
        async with server:
            assert server.sockets[0].getsockname() == listening.getsockname()
            connected = socket.create_connection(listening.getsockname())
            return await _echoed(asyncio.open_connection(sock=connected), b"on my socket")

    assert loop.run_until_complete(main()) == b"on my socket"


def test_a_server_on_a_list_of_hosts_listens_on_each(loop):
    async def main():
        port = free_port()
        server = await asyncio.start_server(_echo, ["127.0.0.1", "::1"], port, reuse_address=True)
        async with server:
            names = sorted(sock.getsockname()[:2] for sock in server.sockets)
            reuse = [
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) for sock in server.sockets
            ]
            echoed = await _echoed(asyncio.open_connection("::1", port), b"six")
            return names, port, reuse, echoed

    names, port, reuse, echoed = loop.run_until_complete(main())
    assert names == [("127.0.0.1", port), ("::1", port)]
    assert reuse == [1, 1]
    assert echoed == b"six"


def test_a_stale_unix_socket_file_is_replaced(loop, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, with nobody listening on it

    async def main():
        server = await asyncio.start_unix_server(_echo, path)
        async with server:
            return await _echoed(asyncio.open_unix_connection(path), b"fresh")

    assert loop.run_until_complete(main()) == b"fresh"


def test_sendfile_falls_back_to_reads_and_writes_where_the_transport_cannot(
    loop, tmp_path, server_ctx, client_ctx
):
    path = tmp_path / "payload.bin"
    payload = bytes(range(256)) * 1024
    path.write_bytes(payload)

    @_served
    async def receive(reader, writer):
        writer.write(await reader.readexactly(len(payload)))

    async def main():
        server = await asyncio.start_server(receive, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", _port(server), ssl=client_ctx, server_hostname="localhost"
            )
            with open(path, "rb") as f:
                with pytest.raises(RuntimeError, match="fallback is disabled and native sendfile"):
                    await loop.sendfile(writer.transport, f, fallback=False)
                sent = await loop.sendfile(writer.transport, f)
            echoed = await reader.readexactly(len(payload))
            writer.close()
            await writer.wait_closed()
            return sent, echoed

    assert loop.run_until_complete(main()) == (len(payload), payload)


def test_in_debug_mode_sock_calls_refuse_a_blocking_socket(loop, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    loop.set_debug(True)

    async def main():
        stream, _ = socket.socketpair()
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        unconnected = socket.socket()
        with stream, _, datagram, unconnected, open(tmp_path / "empty", "rb") as file:
            calls = [
                loop.sock_recv(stream, 10),
                loop.sock_recv_into(stream, bytearray(10)),
                loop.sock_sendall(stream, b"x"),
                loop.sock_connect(unconnected, ("127.0.0.1", 9)),
                loop.sock_accept(unconnected),
                loop.sock_sendfile(stream, file),
            ]
            if sys.version_info >= (3, 11):
                calls += [
                    loop.sock_recvfrom(datagram, 10),
                    loop.sock_recvfrom_into(datagram, bytearray(10)),
                    loop.sock_sendto(datagram, b"x", ("127.0.0.1", 9)),
                ]
            messages = []
            for call in calls:
                with pytest.raises(ValueError) as refused:
                    await call
                messages.append(str(refused.value))
            datagram.setblocking(False)
            with pytest.raises(ValueError) as not_a_stream:
                await loop.sock_sendfile(datagram, file)
            return set(messages), str(not_a_stream.value)

    messages, not_a_stream = loop.run_until_complete(main())
    assert messages == {"the socket must be non-blocking"}
    assert not_a_stream == "only SOCK_STREAM type sockets are supported"
