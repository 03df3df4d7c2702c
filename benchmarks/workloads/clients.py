"""Database clients, unchanged, against their servers: redis-py's asyncio client and a
redis-server, asyncpg and a throwaway PostgreSQL cluster.

The loop runs the client side, as an application that talks to its database does: the client's
connection pool, its protocol parser and its per-command coroutines between the loop's writes and
reads. The server is the load's other process (PostgreSQL: its processes), placed as the load
clients of network.py are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import tempfile

from .base import Workload
from .placement import client_argv

# Commands in flight at once: one per connection of the client's pool.
_CONCURRENCY = 16
_VALUE = b"x" * 100
# One prepared statement with two parameters, returning a row of two columns.
_QUERY = "SELECT $1::int AS n, $2::text AS t"
_TEXT = "x" * 100


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


async def _run_checked(argv: list[str], errors: str) -> None:
    """Runs `argv`, its stderr into the file `errors`, not a pipe: uvloop 0.23 leaves a copy of a
    child's stderr pipe open in it under another fd, where pg_ctl's server inherits it, so reading
    the pipe to its end would wait for the server to exit."""
    with open(errors, "wb") as err:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=err
        )
        await process.wait()
    if process.returncode:
        with open(errors) as err:
            raise SystemExit(f"{argv} exited with {process.returncode}: {err.read()}")


def postgres_missing() -> str | None:
    """Why the PostgreSQL row cannot run here, or None."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        return "PostgreSQL's initdb and pg_ctl are not installed"
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: as root, it runs as the postgres user.
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, with no postgres user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root, and runuser is not installed to run PostgreSQL as postgres"
    return None


@contextlib.asynccontextmanager
async def _postgres_cluster():
    """A PostgreSQL cluster of its own in a temporary directory, trusting local connections, its
    server placed where the load clients go; yields its port."""
    missing = postgres_missing()
    if missing:
        raise SystemExit(missing)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    root = tempfile.mkdtemp(prefix="ferroloop-bench-pg-")
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, errors = os.path.join(root, "data"), os.path.join(root, "errors")
    try:
        await _run_checked([*as_user, initdb, "-D", data, "-A", "trust", "-U", "bench"], errors)
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        log = os.path.join(root, "log")
        start = [pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "start"]
        await _run_checked(client_argv([*as_user, *start]), errors)
        try:
            yield port
        finally:
            stop = [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]
            await _run_checked([*as_user, *stop], errors)
    finally:
        shutil.rmtree(root)


async def _asyncpg_fetch(duration_ms: int) -> tuple[int, float]:
    import asyncpg

    async with _postgres_cluster() as port:
        dsn = dict(host="127.0.0.1", port=port, user="bench", database="postgres")
        async with asyncpg.create_pool(
            **dsn, ssl=False, min_size=_CONCURRENCY, max_size=_CONCURRENCY
        ) as pool:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + duration_ms / 1000

            async def queries(i: int) -> int:
                done = 0
                while loop.time() < deadline:
                    row = await pool.fetchrow(_QUERY, i, _TEXT)
                    assert row[0] == i
                    done += 1
                return done

            start = loop.time()
            counts = await asyncio.gather(*(queries(i) for i in range(_CONCURRENCY)))
            return sum(counts), loop.time() - start


WORKLOADS = {
    "redis-py SET+GET (redis-server)": Workload(
        _redis_set_get, 2000, 1000, "command", smoke_size=300, placed=True
    ),
    "asyncpg fetchrow (PostgreSQL)": Workload(
        _asyncpg_fetch, 2000, 1000, "query", smoke_size=300, placed=True
    ),
}

# The modules each row imports (requirements-dev.txt and benchmarks/requirements.txt pin them).
MODULES = {
    "redis-py SET+GET (redis-server)": ("redis",),
    "asyncpg fetchrow (PostgreSQL)": ("asyncpg",),
}
