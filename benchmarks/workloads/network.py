"""Network workloads: a server on the loop under test, loaded by one external client.

The clients are `benchmarks/loadgen` (Rust, one blocking thread per connection) and wrk for HTTP,
the same binaries for every loop, in their own processes: the server is what is measured. For the
echo rows, the same client against loadgen's pure-Rust mio echo server gives the ceiling. Sizes
are load durations in milliseconds, except for the bulk row (MiB).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .base import Workload
from .placement import PLACEMENTS, client_argv, on_cpus

LOADGEN = (
    Path(__file__).resolve().parents[1] / "loadgen" / "target" / "release" / "ferroloop-loadgen"
)
CONNECTIONS = 4


def _client_args(mode: str, port: int, size: int, amount: int) -> list[str]:
    if not LOADGEN.exists():
        raise SystemExit(f"{LOADGEN} is missing: `make bench` builds it")
    addr = f"127.0.0.1:{port}"
    if mode == "bulk":
        return [str(LOADGEN), "bulk", addr, str(amount)]
    return [str(LOADGEN), mode, addr, str(CONNECTIONS), str(size), str(amount / 1000)]


def _result(mode: str, out: bytes) -> int:
    report = json.loads(out)
    if mode == "bulk":
        return report["bytes"] >> 20
    return report["connections"] if mode == "connect" else report["round_trips"]


async def run_loadgen(mode: str, port: int, size: int, amount: int) -> int:
    """Runs loadgen in `mode` against `port` for `amount` (ms, or MiB for bulk): what it counted."""
    proc = await asyncio.create_subprocess_exec(
        *client_argv(_client_args(mode, port, size, amount)), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"loadgen failed with exit code {proc.returncode}")
    return _result(mode, out)


async def _serve_and_load(server, size: int, amount: int, mode: str = "tcp") -> int:
    port = server.sockets[0].getsockname()[1]
    try:
        return await run_loadgen(mode, port, size, amount)
    finally:
        server.close()


def _mio_ceiling(mode: str, size: int):
    """The same client against loadgen's pure-Rust echo server, in operations per second, with the
    two placed as the row's placement says (unpinned if None)."""

    def measure(amount: int, placement: str | None) -> float:
        server_cpus, client_cpus = PLACEMENTS[placement] if placement else (None, None)
        server = subprocess.Popen(
            on_cpus(server_cpus, [str(LOADGEN), "serve", "127.0.0.1:0"]), stdout=subprocess.PIPE
        )
        try:
            port = json.loads(server.stdout.readline())["port"]
            start = time.perf_counter()
            out = subprocess.run(
                on_cpus(client_cpus, _client_args(mode, port, size, amount)),
                capture_output=True,
                check=True,
            ).stdout
            return _result(mode, out) / (time.perf_counter() - start)
        finally:
            server.kill()
            server.wait()

    return measure


async def _stream_handler(reader, writer):
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _EchoBufferedProtocol(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray(256 * 1024)
        self.view = memoryview(self.buffer)

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        self.transport.write(self.view[:nbytes])


async def _sock_echo(loop, conn):
    with conn:
        try:
            while data := await loop.sock_recv(conn, 256 * 1024):
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass


def _sock_calls(size: int):
    """An echo server on the loop's socket methods (sock_accept, sock_recv, sock_sendall), as a
    program that skips transports and protocols writes one."""

    async def body(amount: int) -> int:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        echoes = []

        async def accept():
            while True:
                conn, _ = await loop.sock_accept(listener)
                # As asyncio's socket transports do for themselves.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                echoes.append(loop.create_task(_sock_echo(loop, conn)))

        acceptor = loop.create_task(accept())
        try:
            return await run_loadgen("tcp", listener.getsockname()[1], size, amount)
        finally:
            acceptor.cancel()
            await asyncio.gather(acceptor, *echoes, return_exceptions=True)
            listener.close()

    return body


def _streams(size: int, mode: str = "tcp"):
    async def body(amount: int) -> int:
        server = await asyncio.start_server(_stream_handler, "127.0.0.1", 0)
        return await _serve_and_load(server, size, amount, mode)

    return body


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def _udp_ping_pong(duration_ms: int) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        return await run_loadgen("udp", port, 64, duration_ms)
    finally:
        transport.close()


async def _udp_sock_calls(duration_ms: int) -> int:
    """UDP ping-pong served by the loop's socket methods (sock_recvfrom and sock_sendto, new in
    Python 3.11), as a program that skips the datagram transport writes it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)

    async def serve():
        while True:
            data, addr = await loop.sock_recvfrom(sock, 64 * 1024)
            await loop.sock_sendto(sock, data, addr)

    server = loop.create_task(serve())
    try:
        return await run_loadgen("udp", sock.getsockname()[1], 64, duration_ms)
    finally:
        if server.done():
            server.result()  # the server stopped: its error is the run's
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        sock.close()


_HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Connection: keep-alive\r\n\r\nHello, world!"
)


class _HttpHello(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server that answers every request head with the same response."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        requests = self.buffer.count(b"\r\n\r\n")
        if requests:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(_HTTP_RESPONSE * requests)


async def wrk_requests(url: str, duration_ms: int) -> tuple[int, float]:
    """Loads `url` with wrk (one thread, 16 keep-alive connections) for about `duration_ms`: the
    requests it made and the seconds it took, by its own clock (so the rate leaves out its start
    and exit, and the server's set-up and tear-down)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `make bench` installs it")
    proc = await asyncio.create_subprocess_exec(
        *client_argv([wrk, "-t1", "-c16", f"-d{max(1, round(duration_ms / 1000))}s", url]),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    match = re.search(rb"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
    if proc.returncode != 0 or match is None or b"Non-2xx" in out:
        raise SystemExit(f"wrk failed: {out.decode(errors='replace')[-300:]}")
    seconds = float(match.group(2)) * {b"ms": 0.001, b"s": 1, b"m": 60}[match.group(3)]
    return int(match.group(1)), seconds


async def _http_hello(duration_ms: int, ssl=None) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HttpHello, "127.0.0.1", 0, ssl=ssl)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl is not None else "http"
    try:
        return await wrk_requests(f"{scheme}://127.0.0.1:{port}/", duration_ms)
    finally:
        server.close()


def _protocol(factory, size: int, ssl=None, mode: str = "tcp"):
    async def body(duration_ms: int) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ssl() if ssl else None)
        return await _serve_and_load(server, size, duration_ms, mode)

    return body


def _echo(body, size: int) -> Workload:
    return Workload(
        body,
        1500,
        400,
        "round trip",
        smoke_size=200,
        ceiling=_mio_ceiling("tcp", size),
        placed=True,
    )


WORKLOADS = {
    "TCP echo 1 KiB, streams": _echo(_streams(1024), 1024),
    "TCP echo 10 KiB, streams": _echo(_streams(10 * 1024), 10 * 1024),
    "TCP echo 100 KiB, streams": _echo(_streams(100 * 1024), 100 * 1024),
    "TCP echo 1 KiB, Protocol": _echo(_protocol(_EchoProtocol, 1024), 1024),
    "TCP echo 10 KiB, Protocol": _echo(_protocol(_EchoProtocol, 10 * 1024), 10 * 1024),
    "TCP echo 100 KiB, Protocol": _echo(_protocol(_EchoProtocol, 100 * 1024), 100 * 1024),
    "TCP echo 1 KiB, BufferedProtocol": _echo(_protocol(_EchoBufferedProtocol, 1024), 1024),
    "TCP echo 10 KiB, BufferedProtocol": _echo(
        _protocol(_EchoBufferedProtocol, 10 * 1024), 10 * 1024
    ),
    "TCP echo 100 KiB, BufferedProtocol": _echo(
        _protocol(_EchoBufferedProtocol, 100 * 1024), 100 * 1024
    ),
    "TCP echo 1 KiB, sock_* calls": _echo(_sock_calls(1024), 1024),
    # Short connections: each of loadgen's four threads connects, makes one 64-byte echo round
    # trip and closes, again and again; the server's part is accepting, setting up a transport,
    # one read and write, and taking it down.
    "TCP connect+echo+close 64 B, Protocol": Workload(
        _protocol(_EchoProtocol, 64, mode="connect"),
        1500,
        400,
        "connection",
        smoke_size=200,
        ceiling=_mio_ceiling("connect", 64),
        placed=True,
    ),
    "TCP bulk 64 MiB, streams": Workload(
        _streams(0, mode="bulk"),
        64,
        64,
        "MiB",
        smoke_size=4,
        ceiling=_mio_ceiling("bulk", 0),
        placed=True,
        unsupported={
            "rloop": "rloop 0.5.0 never finished this echo (hung until killed, 2026-11-25)"
        },
    ),
    "UDP ping-pong 64 B": Workload(
        _udp_ping_pong, 1500, 400, "round trip", smoke_size=200, placed=True
    ),
    "UDP ping-pong 64 B, sock_* calls": Workload(
        _udp_sock_calls,
        1500,
        400,
        "round trip",
        smoke_size=200,
        placed=True,
        unsupported={
            "uvloop": "uvloop 0.23.0 raises NotImplementedError for sock_recvfrom",
            "rloop": "rloop 0.5.0 raises NotImplementedError for sock_recvfrom",
        },
    ),
    "HTTP/1.1 keep-alive hello (wrk)": Workload(
        _http_hello, 2000, 1000, "request", smoke_size=1000, placed=True
    ),
}
