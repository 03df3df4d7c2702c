"""websockets' own asyncio server and client, unchanged, on asyncio and ferroloop alike: text and
binary messages (a fragmented 1 MiB one among them), ping and pong, closing handshakes with
their codes and reasons, many connections at once, TLS, Unix sockets, a server shut down under
its connections, an HTTP answer instead of an upgrade, and flow control both ways."""

from __future__ import annotations

import asyncio

import pytest

ws_server = pytest.importorskip("websockets.asyncio.server")
ws_client = pytest.importorskip("websockets.asyncio.client")
from websockets.exceptions import ConnectionClosedOK, InvalidStatus  # noqa: E402


async def _echo(connection):
    async for message in connection:
        if message == "close please":
            await connection.close(1001, "going away")
            return
        await connection.send(message)


def _serve():
    return ws_server.serve(_echo, "127.0.0.1", 0, max_size=None)


def _url(server) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


def test_messages_of_every_kind_echo_exactly(loop):
    big = bytes(range(256)) * 4096  # 1 MiB, sent in fragments
    messages = ["hello", "", "é" * 1000, b"\x00\xff" * 10, big]

    async def main():
        async with _serve() as server:
            async with ws_client.connect(_url(server), max_size=None) as ws:
                replies = []
                for message in messages:
                    await ws.send(message)
                    replies.append(await ws.recv())
                await ws.send([b"part one, ", b"part two"])
                replies.append(await ws.recv())
                return replies

    replies = loop.run_until_complete(main())
    assert replies == [*messages, b"part one, part two"]


def test_ping_is_answered_with_pong(loop):
    async def main():
        async with _serve() as server:
            async with ws_client.connect(_url(server)) as ws:
                pong = await ws.ping(b"are you there")
                latency = await asyncio.wait_for(pong, 10)
                return latency >= 0, ws.latency >= 0

    assert loop.run_until_complete(main()) == (True, True)


def test_server_close_reaches_the_client_with_its_code_and_reason(loop):
    async def main():
        async with _serve() as server:
            async with ws_client.connect(_url(server)) as ws:
                await ws.send("close please")
                with pytest.raises(ConnectionClosedOK) as closed:
                    await ws.recv()
                return closed.value.rcvd.code, closed.value.rcvd.reason

    assert loop.run_until_complete(main()) == (1001, "going away")


def test_client_close_ends_the_server_side(loop):
    ended = []

    async def handler(connection):
        try:
            await connection.recv()
        except ConnectionClosedOK as exc:
            ended.append((exc.rcvd.code, exc.rcvd.reason))

    async def main():
        async with ws_server.serve(handler, "127.0.0.1", 0) as server:
            ws = await ws_client.connect(_url(server))
            await ws.close(1000, "done")
            for _ in range(1000):
                if ended:
                    break
                await asyncio.sleep(0.01)
        return ended

    assert loop.run_until_complete(main()) == [(1000, "done")]


def test_many_connections_at_once(loop):
    async def client(url, i):
        async with ws_client.connect(url) as ws:
            for j in range(5):
                await ws.send(f"{i}.{j}")
                assert await ws.recv() == f"{i}.{j}"
        return i

    async def main():
        async with _serve() as server:
            url = _url(server)
            return sorted(await asyncio.gather(*(client(url, i) for i in range(100))))

    assert loop.run_until_complete(main()) == list(range(100))


def test_echo_over_tls(loop, server_ctx, client_ctx):
    big = bytes(range(256)) * 4096

    async def main():
        async with ws_server.serve(_echo, "127.0.0.1", 0, ssl=server_ctx, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"wss://localhost:{port}/"
            async with ws_client.connect(url, ssl=client_ctx, max_size=None) as ws:
                cipher = ws.transport.get_extra_info("cipher")
                await ws.send("over TLS")
                first = await ws.recv()
                await ws.send(big)
                return cipher is not None, first, await ws.recv() == big

    assert loop.run_until_complete(main()) == (True, "over TLS", True)


def test_echo_over_a_unix_socket(loop, tmp_path):
    path = str(tmp_path / "ws.sock")

    async def main():
        async with ws_server.unix_serve(_echo, path):
            async with ws_client.unix_connect(path) as ws:
                await ws.send("over a Unix socket")
                return await ws.recv()

    assert loop.run_until_complete(main()) == "over a Unix socket"


def test_server_close_ends_every_connection_with_going_away(loop):
    async def hold(connection):
        await connection.wait_closed()

    async def main():
        server = await ws_server.serve(hold, "127.0.0.1", 0)
        clients = [await ws_client.connect(_url(server)) for _ in range(3)]
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as closed:
                await ws.recv()
            codes.append(closed.value.rcvd.code)
        return codes, server.connections

    assert loop.run_until_complete(main()) == ([1001, 1001, 1001], set())


def test_http_answer_instead_of_an_upgrade(loop):
    def refuse(connection, request):
        return connection.respond(403, "no websocket for you\n")

    async def main():
        async with ws_server.serve(_echo, "127.0.0.1", 0, process_request=refuse) as server:
            with pytest.raises(InvalidStatus) as refused:
                await ws_client.connect(_url(server))
            response = refused.value.response
            return response.status_code, response.body

    assert loop.run_until_complete(main()) == (403, b"no websocket for you\n")


def test_a_client_that_does_not_read_pauses_the_transport_and_loses_nothing(loop):
    """With more than `max_queue` messages waiting, websockets pauses the transport's reading;
    the server's sends then wait on its write buffer. Reading them all resumes both."""
    count, size = 64, 64 * 1024

    async def flood(connection):
        for i in range(count):
            await connection.send(i.to_bytes(4, "big") * (size // 4))
        await connection.wait_closed()

    async def main():
        async with ws_server.serve(flood, "127.0.0.1", 0, write_limit=size) as server:
            async with ws_client.connect(_url(server), max_queue=4, max_size=None) as ws:
                for _ in range(1000):
                    if not ws.transport.is_reading():
                        break
                    await asyncio.sleep(0.01)
                paused = not ws.transport.is_reading()
                got = [await ws.recv() for _ in range(count)]
                return paused, ws.transport.is_reading(), got

    paused, reading_after, got = loop.run_until_complete(main())
    assert (paused, reading_after) == (True, True)
    assert got == [i.to_bytes(4, "big") * (size // 4) for i in range(count)]
