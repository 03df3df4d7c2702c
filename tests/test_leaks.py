"""Nothing outlives its use: many cycles of each kind of work leave no Python object, file
descriptor or native memory behind, on asyncio and ferroloop alike.

Each workload runs once to warm up (first-use caches, the allocator's arenas), then three more
times, each in a fresh loop that is closed before the next; the counts are taken after a garbage
collection. A leak of one garbage-collected Python object per cycle shows as hundreds or thousands
of objects, a leaked socket as a file descriptor. Native memory (RSS) may grow by at most
`RSS_SLACK_KB` over a workload's cycles: about 1 KiB per cycle for the connection workloads, 2-3
KiB for TLS and sendfile, 11 KiB per subprocess, under 100 bytes for callbacks and timers.

Checked by breaking ferroloop on purpose: 1 KiB leaked per transport fails the TCP, Unix, UDP and
failing-protocol workloads, a protocol reference leaked per transport fails every workload with a
transport (its socket stays open), and a list kept per transport fails the object count.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, start_tls_server

RSS_SLACK_KB = 2048
# Python objects the counts may differ by that no cycle made (the interpreter's own caches).
OBJECT_SLACK = 50


@dataclass
class Env:
    tmp_path: Path
    server_ctx: object = None
    client_ctx: object = None


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Failing(asyncio.Protocol):
    """Raises from data_received: the loop reports it and closes the transport."""

    def data_received(self, data):
        raise RuntimeError("failing protocol")


async def _echo_once(reader, writer):
    writer.write(await reader.readexactly(1000))
    await writer.drain()
    writer.close()


async def _stream_cycles(server, n, connect):
    """`n` connections to `server` (serving `_echo_once`) made by `connect()`: an echo, a close."""
    async with server:
        for _ in range(n):
            reader, writer = await connect()
            writer.write(b"x" * 1000)
            await reader.readexactly(1000)
            writer.close()
            await writer.wait_closed()


async def tcp_streams(n, env):
    server = await asyncio.start_server(_echo_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await _stream_cycles(server, n, lambda: asyncio.open_connection("127.0.0.1", port))


async def tls_streams(n, env):
    server, port = await start_tls_server(env.server_ctx, _echo_once)
    await _stream_cycles(
        server,
        n,
        lambda: asyncio.open_connection(
            "127.0.0.1", port, ssl=env.client_ctx, server_hostname="localhost"
        ),
    )


async def unix_streams(n, env):
    path = str(env.tmp_path / "leaks.sock")
    server = await asyncio.start_unix_server(_echo_once, path)
    await _stream_cycles(server, n, lambda: asyncio.open_unix_connection(path))


async def refused_connections(n, env):
    port = free_port()
    for _ in range(n):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def failing_protocols(n, env):
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda loop, context: reported.append(context["message"]))
    server = await loop.create_server(Failing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"z")
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()
    assert len(reported) == n


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        if not self.received.done():
            self.received.set_result(data)


class _DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def udp_endpoints(n, env):
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_DatagramEcho, local_addr=("127.0.0.1", 0))
    for _ in range(n):
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=server.get_extra_info("sockname")
        )
        transport.sendto(b"ping")
        assert await protocol.received == b"ping"
        transport.close()
        await asyncio.sleep(0)
    server.close()


async def _cancelled_while_waiting(coroutine):
    """Starts `coroutine`, lets it block, cancels it and sees it end cancelled."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def sock_calls(n, env):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            received = asyncio.ensure_future(loop.sock_recv(b, 100))
            await loop.sock_sendall(a, b"abc")
            assert await received == b"abc"
            await _cancelled_while_waiting(loop.sock_recv(b, 100))


async def fd_callbacks(n, env):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        a, b = socket.socketpair()
        with a, b:
            readable = loop.create_future()
            loop.add_reader(a, readable.set_result, None)
            b.send(b"x")
            await readable
            loop.remove_reader(a)


async def pipes(n, env):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        r, w = os.pipe()
        read_transport, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", 0))
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
        write_transport.write(b"abc")
        write_transport.close()
        read_transport.close()
        await asyncio.sleep(0)


async def sendfiles(n, env):
    loop = asyncio.get_running_loop()
    path = env.tmp_path / "leaks.bin"
    path.write_bytes(b"s" * 100_000)
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        with open(path, "rb") as f:
            assert await loop.sendfile(writer.transport, f) == 100_000
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def subprocesses(n, env):
    for _ in range(n):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "", stdout=asyncio.subprocess.PIPE
        )
        await process.communicate()


async def callbacks_timers_tasks(n, env):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        done = loop.create_future()
        loop.call_soon(done.set_result, 1)
        await done
        loop.call_later(10, print).cancel()
        await asyncio.ensure_future(asyncio.sleep(0))
        await _cancelled_while_waiting(asyncio.sleep(10))


async def threadsafe_calls(n, env):
    loop = asyncio.get_running_loop()

    def from_a_thread():
        for _ in range(100):
            loop.call_soon_threadsafe(int)

    for _ in range(n // 100):
        await loop.run_in_executor(None, from_a_thread)
        await asyncio.sleep(0)


async def signal_handlers(n, env):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        loop.add_signal_handler(signal.SIGUSR1, int)
        assert loop.remove_signal_handler(signal.SIGUSR1)


WORKLOADS = {
    "tcp streams": (tcp_streams, 700),
    "tls streams": (tls_streams, 250),
    "unix streams": (unix_streams, 700),
    "refused connections": (refused_connections, 700),
    "failing protocols": (failing_protocols, 500),
    "udp endpoints": (udp_endpoints, 1000),
    "sock_* calls": (sock_calls, 1000),
    "fd callbacks": (fd_callbacks, 1000),
    "pipes": (pipes, 700),
    "sendfile": (sendfiles, 300),
    "subprocesses": (subprocesses, 60),
    "callbacks, timers, tasks": (callbacks_timers_tasks, 5000),
    "call_soon_threadsafe": (threadsafe_calls, 10000),
    "signal handlers": (signal_handlers, 1000),
}


def _run(loop_factory, workload, n, env):
    loop = loop_factory()
    try:
        loop.run_until_complete(workload(n, env))
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.mark.parametrize("name", WORKLOADS)
def test_cycles_leave_nothing_behind(loop_factory, name, tmp_path, request):
    workload, n = WORKLOADS[name]
    env = Env(tmp_path)
    if workload is tls_streams:
        env.server_ctx = request.getfixturevalue("server_ctx")
        env.client_ctx = request.getfixturevalue("client_ctx")
    _run(loop_factory, workload, n, env)
    gc.collect()
    objects, fds, rss = len(gc.get_objects()), open_fds(), rss_kb()
    for _ in range(3):
        _run(loop_factory, workload, n, env)
    gc.collect()
    new_fds = open_fds() - fds
    new_objects = len(gc.get_objects()) - objects
    grown_kb = rss_kb() - rss
    assert new_fds == 0
    assert new_objects <= OBJECT_SLACK
    assert grown_kb <= RSS_SLACK_KB
