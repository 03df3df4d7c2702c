"""redis-py's asyncio client on ferroloop, unchanged, against a throwaway redis-server, with the
same assertions on asyncio: commands over TCP, a Unix socket and TLS, a pipeline, many clients at
once, pub/sub, and a blocking command cancelled by a timeout."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import free_port

redis_asyncio = pytest.importorskip("redis.asyncio")


@pytest.fixture(scope="module")
def redis_server(ca):
    """A redis-server listening on TCP, TLS and a Unix socket: (port, tls_port, socket path)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed on this machine (make test installs it)")
    root = Path(tempfile.mkdtemp(prefix="ferroloop-redis-"))
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    ca.cert_pem.write_to_path(str(root / "ca.crt"))
    port, tls_port, path = free_port(), free_port(), root / "redis.sock"
    # Runs in the foreground, without persistence, until the module's tests are done.
    options = {
        "bind": "127.0.0.1",
        "port": port,
        "tls-port": tls_port,
        "tls-cert-file": root / "server.crt",
        "tls-key-file": root / "server.key",
        "tls-ca-cert-file": root / "ca.crt",
        "tls-auth-clients": "no",
        "unixsocket": path,
        "save": "",
        "appendonly": "no",
        "dir": root,
    }
    proc = subprocess.Popen(
        [server, *(arg for name, value in options.items() for arg in (f"--{name}", str(value)))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
        yield port, tls_port, str(path)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root)


def test_commands_a_pipeline_and_many_clients_over_tcp(loop, redis_server):
    port = redis_server[0]

    async def main():
        client = redis_asyncio.Redis(host="127.0.0.1", port=port, db=1)
        try:
            await client.flushdb()
            await client.set("greeting", "hello")
            greeting = await client.get("greeting")
            big = bytes(range(256)) * 4096  # 1 MiB, every byte value
            await client.set("big", big)
            big_back = await client.get("big")
            async with client.pipeline(transaction=True) as pipe:
                for _ in range(1000):
                    pipe.incr("counter")
                counts = await pipe.execute()
            # 50 clients at once, each with its own connection from the pool.
            clients = [redis_asyncio.Redis(host="127.0.0.1", port=port, db=1) for _ in range(50)]
            try:
                await asyncio.gather(*(c.rpush("list", i) for i, c in enumerate(clients)))
            finally:
                await asyncio.gather(*(c.aclose() for c in clients))
            members = sorted(int(x) for x in await client.lrange("list", 0, -1))
        finally:
            await client.aclose()
        return greeting, big_back == big, counts[-1], members

    result = loop.run_until_complete(main())
    assert result == (b"hello", True, 1000, list(range(50)))


def test_a_unix_socket_connection(loop, redis_server):
    path = redis_server[2]

    async def main():
        client = redis_asyncio.Redis(unix_socket_path=path, db=2)
        try:
            await client.flushdb()
            await client.hset("h", mapping={"a": "1", "b": "2"})
            return await client.hgetall("h")
        finally:
            await client.aclose()

    assert loop.run_until_complete(main()) == {b"a": b"1", b"b": b"2"}


def test_a_tls_connection(loop, redis_server, ca):
    tls_port = redis_server[1]
    with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
        ca.cert_pem.write_to_path(ca_file.name)

        async def main():
            client = redis_asyncio.Redis(
                host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=ca_file.name, db=3
            )
            try:
                await client.set("secret", "x" * 200_000)
                value = await client.get("secret")
                info = await client.client_info()
            finally:
                await client.aclose()
            return len(value), info["db"]

        assert loop.run_until_complete(main()) == (200_000, 3)


def test_pub_sub(loop, redis_server):
    port = redis_server[0]

    async def main():
        client = redis_asyncio.Redis(host="127.0.0.1", port=port)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("news")
            confirmation = await pubsub.get_message(timeout=5)
            for i in range(3):
                await client.publish("news", f"item {i}")
            received = []
            while len(received) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is not None:
                    received.append(message["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()
        return confirmation["type"], received

    assert loop.run_until_complete(main()) == ("subscribe", [b"item 0", b"item 1", b"item 2"])


def test_a_blocking_command_cancelled_by_a_timeout(loop, redis_server):
    port = redis_server[0]

    async def main():
        client = redis_asyncio.Redis(host="127.0.0.1", port=port, db=4)
        try:
            await client.delete("queue")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.blpop(["queue"], timeout=0), 0.2)
            # The client is usable after the cancellation: redis-py drops the cancelled
            # connection rather than reading a stale reply on it.
            await client.rpush("queue", "job")
            return await client.blpop(["queue"], timeout=5)
        finally:
            await client.aclose()

    assert loop.run_until_complete(main()) == (b"queue", b"job")
