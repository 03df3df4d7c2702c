"""grpc.aio on ferroloop, unchanged, with the same assertions on asyncio: a server and a channel in
one loop, a unary call and a bidirectional stream (generic handlers, so no generated code)."""

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


def test_unary_and_streaming_calls(loop):
    async def main():
        server = aio.server()
        handlers = {
            "Upper": grpc.unary_unary_rpc_method_handler(_upper),
            "Reverse": grpc.stream_stream_rpc_method_handler(_reverse_each),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("echo.Echo", handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                upper = await channel.unary_unary("/echo.Echo/Upper")(b"hello")
                call = channel.stream_stream("/echo.Echo/Reverse")(iter([b"abc", b"xyz"]))
                reversed_ = [item async for item in call]
        finally:
            await server.stop(None)
        return upper, reversed_

    # grpc.aio looks the loop up with asyncio.get_event_loop() in places.
    asyncio.set_event_loop(loop)
    try:
        assert loop.run_until_complete(main()) == (b"HELLO", [b"cba", b"zyx"])
    finally:
        asyncio.set_event_loop(None)
