"""A database client, unchanged, against its server: redis-py's asyncio client and a redis-server.

The loop runs the client side, as an application that talks to Redis does: the client's
connection pool, its protocol parser and its per-command coroutines between the loop's writes and
reads. The redis-server is the load's other process, placed as the load clients of network.py are.
"""

from __future__ import annotations

import asyncio
import shutil
import socket

from .base import Workload
from .placement import client_argv

# Commands in flight at once: one per connection of the client's pool.
_CONCURRENCY = 16
_VALUE = b"x" * 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _redis_set_get(duration_ms: int) -> tuple[int, float]:
    import redis.asyncio as redis

    server_bin = shutil.which("redis-server")
    if server_bin is None:
        raise SystemExit("redis-server is not installed: `make bench` installs it")
    port = _free_port()
    # In memory only, as a cache: no snapshots, no append-only file.
    argv = [server_bin, "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--save", "", "--appendonly", "no"]
    server = await asyncio.create_subprocess_exec(
        *client_argv(argv), stdout=asyncio.subprocess.DEVNULL
    )
    client = redis.Redis(port=port, max_connections=_CONCURRENCY)
    try:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await client.ping()
                break
            except redis.ConnectionError:
                if server.returncode is not None:
                    raise SystemExit(f"redis-server exited with {server.returncode}") from None
                await asyncio.sleep(0.01)
        deadline = loop.time() + duration_ms / 1000

        async def commands(key: str) -> int:
            done = 0
            while loop.time() < deadline:
                await client.set(key, _VALUE)
                await client.get(key)
                done += 2
            return done

        start = loop.time()
        counts = await asyncio.gather(*(commands(f"key{i}") for i in range(_CONCURRENCY)))
        return sum(counts), loop.time() - start
    finally:
        await client.aclose()
        server.terminate()
        await server.wait()


WORKLOADS = {
    "redis-py SET+GET (redis-server)": Workload(
        _redis_set_get, 2000, 1000, "command", smoke_size=300, placed=True
    ),
}

# The modules each row imports (requirements-dev.txt and benchmarks/requirements.txt pin them).
MODULES = {"redis-py SET+GET (redis-server)": ("redis",)}
