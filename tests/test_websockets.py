"""websockets' own asyncio server and client, unchanged, on asyncio and ferroloop alike: text and
binary messages (a fragmented 1 MiB one among them), ping and pong, closing handshakes with
their codes and reasons, and many connections at once."""

from __future__ import annotations

import asyncio

import pytest

ws_server = pytest.importorskip("websockets.asyncio.server")
ws_client = pytest.importorskip("websockets.asyncio.client")
from websockets.exceptions import ConnectionClosedOK  # noqa: E402


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
