"""grpc.aio on ferroloop, unchanged, with the same assertions on asyncio: a server and a channel in
one loop, a unary call and a bidirectional stream (generic handlers, so no generated code)."""

from __future__ import annotations

import asyncio

import pytest

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
