"""Servers of web libraries, unchanged, under load from another process: what an application sees.

The HTTP keep-alive row in network.py measures the loop under a server of a few lines; here the
library's own work (aiohttp's parser, router and response; uvicorn's httptools protocol and an
ASGI app; websockets' framing and message queue) runs between the loop's reads and writes, as it
does in production. wrk loads the HTTP servers, loadgen the WebSocket one.
"""

from __future__ import annotations

import asyncio

from .base import Workload
from .network import run_loadgen, wrk_requests

_BODY = b"Hello, world!"


async def _aiohttp_hello(duration_ms: int) -> tuple[int, float]:
    from aiohttp import web

    async def hello(request):
        return web.Response(body=_BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await wrk_requests(f"http://127.0.0.1:{port}/", duration_ms)
    finally:
        await runner.cleanup()


async def _hello_app(scope, receive, send):
    """The ASGI app: every HTTP request gets the same response."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


async def _uvicorn_hello(duration_ms: int) -> tuple[int, float]:
    import uvicorn

    # uvicorn binds the port itself, as `uvicorn --port` does: a socket it is handed is served as
    # made, and one from socket.create_server() has proto 0, for which asyncio leaves Nagle on.
    config = uvicorn.Config(
        _hello_app,
        host="127.0.0.1",
        port=0,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        return await wrk_requests(f"http://127.0.0.1:{port}/", duration_ms)
    finally:
        server.should_exit = True
        await serving


async def _websockets_echo(duration_ms: int) -> int:
    """websockets' asyncio server echoing the load client's 1 KiB binary messages."""
    from websockets.asyncio.server import serve

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    # No keepalive pings, which the load client would have to answer; no compression, which
    # it does not offer anyway.
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        return await run_loadgen("ws", port, 1024, duration_ms)


WORKLOADS = {
    "aiohttp hello (wrk)": Workload(
        _aiohttp_hello, 2000, 1000, "request", smoke_size=1000, placed=True
    ),
    "uvicorn+httptools hello (wrk)": Workload(
        _uvicorn_hello, 2000, 1000, "request", smoke_size=1000, placed=True
    ),
    "websockets echo 1 KiB": Workload(
        _websockets_echo, 1500, 400, "round trip", smoke_size=200, placed=True
    ),
}

# The modules each row imports (requirements-dev.txt and benchmarks/requirements.txt pin them).
MODULES = {
    "aiohttp hello (wrk)": ("aiohttp",),
    "uvicorn+httptools hello (wrk)": ("uvicorn", "httptools"),
    "websockets echo 1 KiB": ("websockets",),
}
