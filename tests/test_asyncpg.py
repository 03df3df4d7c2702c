"""asyncpg on ferroloop, unchanged, against a throwaway PostgreSQL cluster, with the same assertions
on asyncio: queries, a transaction, LISTEN/NOTIFY, a pool, and a TLS connection, which asyncpg
makes by upgrading the stream with `loop.start_tls` after PostgreSQL's SSLRequest."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import free_port

asyncpg = pytest.importorskip("asyncpg")


@pytest.fixture(scope="module")
def postgres(ca):
    """A PostgreSQL cluster with TLS, trusting local connections; its port."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed on this machine")
    # Not under pytest's temporary directories, which only their owner may enter.
    root = Path(tempfile.mkdtemp(prefix="ferroloop-pg-"))
    data = root / "data"
    # PostgreSQL refuses to run as root: as root, run it as the postgres user.
    as_user = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            pytest.skip(
                "running as root, and runuser is not installed to run PostgreSQL as postgres"
            )
        as_user = ["runuser", "-u", "postgres", "--"]
    if as_user:
        shutil.chown(root, "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "test"],
        check=True,
        capture_output=True,
    )
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(data / "server.crt"))
    cert.private_key_pem.write_to_path(str(data / "server.key"))
    os.chmod(data / "server.key", 0o600)
    if as_user:
        for name in ("server.crt", "server.key"):
            shutil.chown(data / name, "postgres")
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on"
    log = root / "log"
    start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield port
    finally:
        stop = [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(stop, check=True, capture_output=True)
        shutil.rmtree(root)


def test_queries_transactions_notifications_and_a_pool(loop, postgres):
    dsn = dict(host="127.0.0.1", port=postgres, user="test", database="postgres")

    async def main():
        conn = await asyncpg.connect(**dsn, ssl=False)
        try:
            answer = await conn.fetchval("SELECT $1::int + 1", 41)
            rows = await conn.fetch("SELECT n FROM generate_series(1, 1000) AS n")
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE words (w text)")
                await conn.executemany(
                    "INSERT INTO words VALUES ($1)", [(str(i),) for i in range(100)]
                )
                count = await conn.fetchval("SELECT count(*) FROM words")
            received = asyncio.get_running_loop().create_future()
            await conn.add_listener("news", lambda *args: received.set_result(args[3]))
            await conn.execute("NOTIFY news, 'hello'")
            payload = await asyncio.wait_for(received, 10)
        finally:
            await conn.close()
        async with asyncpg.create_pool(**dsn, ssl=False, min_size=2, max_size=4) as pool:
            pooled = await asyncio.gather(
                *(pool.fetchval("SELECT $1::text", str(i)) for i in range(8))
            )
        return answer, sum(r["n"] for r in rows), count, payload, pooled

    result = loop.run_until_complete(main())
    assert result == (42, 500500, 100, "hello", [str(i) for i in range(8)])


def test_a_tls_connection_through_start_tls(loop, postgres, client_ctx):
    async def main():
        conn = await asyncpg.connect(
            host="127.0.0.1", port=postgres, user="test", database="postgres", ssl=client_ctx
        )
        try:
            in_tls = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            echoed = await conn.fetchval("SELECT $1::text", "x" * 100_000)
        finally:
            await conn.close()
        return in_tls, len(echoed)

    assert loop.run_until_complete(main()) == (True, 100_000)
