"""anyio on ferroloop, unchanged: its asyncio backend given ferroloop as its loop factory, with the
same assertions on stdlib asyncio. Task groups and cancel scopes, timeouts, TCP streams, a worker
thread, a subprocess and memory object streams."""

from __future__ import annotations

import asyncio
import sys

import pytest

anyio = pytest.importorskip("anyio")


def run(loop_factory, main):
    probe = loop_factory()
    expected = type(probe)
    probe.close()

    async def checked():
        # anyio really runs on the loop the factory makes.
        assert type(asyncio.get_running_loop()) is expected
        return await main()

    return anyio.run(checked, backend="asyncio", backend_options={"loop_factory": loop_factory})


def test_task_groups_and_cancel_scopes(loop_factory):
    async def main():
        events = []

        async def worker(name, delay):
            try:
                await anyio.sleep(delay)
                events.append(f"{name} done")
            except anyio.get_cancelled_exc_class():
                events.append(f"{name} cancelled")
                raise

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, "fast", 0.01)
            tg.start_soon(worker, "slow", 10)
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()

        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(10)
        events.append(("moved on", scope.cancelled_caught))

        try:
            with anyio.fail_after(0.05):
                await anyio.sleep(10)
        except TimeoutError:
            events.append("timed out")
        return events

    assert run(loop_factory, main) == [
        "fast done",
        "slow cancelled",
        ("moved on", True),
        "timed out",
    ]


def test_tcp_streams(loop_factory):
    async def main():
        async def echo(stream):
            async with stream:
                async for chunk in stream:
                    await stream.send(chunk.upper())

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                received = b""
                for word in (b"ferro", b"loop"):
                    await client.send(word)
                    received += await client.receive()
            tg.cancel_scope.cancel()
        return received

    assert run(loop_factory, main) == b"FERROLOOP"


def test_threads_subprocesses_and_memory_streams(loop_factory):
    async def main():
        from_thread = await anyio.to_thread.run_sync(sum, range(10))
        process = await anyio.run_process([sys.executable, "-c", "print('child')"])
        send, receive = anyio.create_memory_object_stream(1)
        async with anyio.create_task_group() as tg:

            async def produce():
                async with send:
                    for i in range(5):
                        await send.send(i)

            tg.start_soon(produce)
            async with receive:
                items = [item async for item in receive]
        return from_thread, process.stdout, process.returncode, items

    assert run(loop_factory, main) == (45, b"child\n", 0, [0, 1, 2, 3, 4])
