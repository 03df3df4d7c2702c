"""Hello-world servers of two web frameworks, unchanged, under wrk: what an application sees.

The HTTP keep-alive row in network.py measures the loop under a server of a few lines; here the
framework's own request handling (aiohttp's parser, router and response; uvicorn's httptools
protocol and an ASGI app) runs between the loop's reads and writes, as it does in production.
"""

from __future__ import annotations

import asyncio

from .base import Workload
from .network import wrk_requests

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


WORKLOADS = {
    "aiohttp hello (wrk)": Workload(
        _aiohttp_hello, 2000, 1000, "request", smoke_size=1000, placed=True
    ),
    "uvicorn+httptools hello (wrk)": Workload(
        _uvicorn_hello, 2000, 1000, "request", smoke_size=1000, placed=True
    ),
}

# The modules each row imports (requirements-dev.txt and benchmarks/requirements.txt pin them).
MODULES = {
    "aiohttp hello (wrk)": ("aiohttp",),
    "uvicorn+httptools hello (wrk)": ("uvicorn", "httptools"),
}
