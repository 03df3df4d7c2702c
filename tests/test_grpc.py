"""grpc.aio on ferroloop, unchanged, with the same assertions on asyncio: a server and a channel in
one loop (generic handlers, so no generated code), with unary and streaming calls, deadlines,
cancellation, errors and their status codes, metadata both ways, and a 3 MiB message."""

from __future__ import annotations

import asyncio
import os

import pytest

# gRPC's fork handlers (pthread_atfork) serve programs that fork without exec; this process only
# forks to exec (the subprocess tests), and on 3.9, where subprocess forks without vfork, a fork
# while gRPC's threads were still busy from this module's tests left the child aborted before its
# exec: `cat` "exited" with -6 and no output, on asyncio. gRPC's documented remedy for fork+exec
# programs is this setting, read when gRPC starts (a value already set is left alone).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
grpc = pytest.importorskip("grpc")
aio = pytest.importorskip("grpc.aio")


def _upper(request, context):
    return request.upper()


async def _reverse_each(request_iterator, context):
    async for item in request_iterator:
        yield item[::-1]


def run_with_server(loop, handlers, client):
    """Runs `client(channel)` against a grpc.aio server of `handlers` (service echo.Echo), both
    in `loop`; returns what it returns."""

    async def main():
        server = aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("echo.Echo", handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await client(channel)
        finally:
            await server.stop(None)

    # grpc.aio looks the loop up with asyncio.get_event_loop() in places.
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)


def test_unary_and_streaming_calls(loop):
    handlers = {
        "Upper": grpc.unary_unary_rpc_method_handler(_upper),
        "Reverse": grpc.stream_stream_rpc_method_handler(_reverse_each),
    }

    async def client(channel):
        upper = await channel.unary_unary("/echo.Echo/Upper")(b"hello")
        call = channel.stream_stream("/echo.Echo/Reverse")(iter([b"abc", b"xyz"]))
        return upper, [item async for item in call]

    assert run_with_server(loop, handlers, client) == (b"HELLO", [b"cba", b"zyx"])


def test_deadline_exceeded(loop):
    async def slow(request, context):
        await asyncio.sleep(5)
        return request

    async def client(channel):
        with pytest.raises(aio.AioRpcError) as failed:
            await channel.unary_unary("/echo.Echo/Slow")(b"x", timeout=0.05)
        return failed.value.code()

    handlers = {"Slow": grpc.unary_unary_rpc_method_handler(slow)}
    assert run_with_server(loop, handlers, client) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancelling_a_stream_reaches_the_server(loop):
    server_saw = []

    async def count(request, context):
        try:
            for i in range(1000):
                yield i.to_bytes(2, "big")
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            server_saw.append("cancelled")
            raise

    async def client(channel):
        call = channel.unary_stream("/echo.Echo/Count")(b"")
        first = [await call.read() for _ in range(3)]
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        for _ in range(500):
            if server_saw:
                break
            await asyncio.sleep(0.01)
        return first, call.cancelled(), await call.code()

    handlers = {"Count": grpc.unary_stream_rpc_method_handler(count)}
    result = run_with_server(loop, handlers, client)
    assert result == ([b"\x00\x00", b"\x00\x01", b"\x00\x02"], True, grpc.StatusCode.CANCELLED)
    assert server_saw == ["cancelled"]


def test_errors_become_status_codes(loop):
    async def abort(request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    async def crash(request, context):
        raise ValueError("broken handler")

    async def client(channel):
        codes = []
        for method in ("Abort", "Crash"):
            with pytest.raises(aio.AioRpcError) as failed:
                await channel.unary_unary(f"/echo.Echo/{method}")(b"")
            codes.append((failed.value.code(), failed.value.details()))
        return codes

    handlers = {
        "Abort": grpc.unary_unary_rpc_method_handler(abort),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
    }
    assert run_with_server(loop, handlers, client) == [
        (grpc.StatusCode.NOT_FOUND, "no such thing"),
        (grpc.StatusCode.UNKNOWN, "Unexpected <class 'ValueError'>: broken handler"),
    ]


def test_metadata_both_ways_and_a_large_message(loop):
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB, under gRPC's 4 MiB default limit

    async def echo(request, context):
        sent = dict(context.invocation_metadata())
        context.set_trailing_metadata((("seen-key", sent["x-key"]),))
        return request

    async def client(channel):
        call = channel.unary_unary("/echo.Echo/Echo")(big, metadata=(("x-key", "value-1"),))
        reply = await call
        trailing = dict(await call.trailing_metadata())
        return reply == big, trailing["seen-key"]

    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    assert run_with_server(loop, handlers, client) == (True, "value-1")
