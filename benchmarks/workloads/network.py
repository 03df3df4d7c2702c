"""Network workloads: an echo server on the loop under test, loaded by one external client.

The client is `benchmarks/loadgen` (Rust, one blocking thread per connection), the same binary for
every loop, in its own process: the server is what is measured. The workload's size is the load's
duration in milliseconds; the result is echo round trips.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from .base import Workload

LOADGEN = (
    Path(__file__).resolve().parents[1] / "loadgen" / "target" / "release" / "ferroloop-loadgen"
)
CONNECTIONS = 4


async def _load(port: int, size: int, duration_ms: int) -> int:
    if not LOADGEN.exists():
        raise SystemExit(f"{LOADGEN} is missing: `make bench` builds it")
    proc = await asyncio.create_subprocess_exec(
        str(LOADGEN),
        "tcp",
        f"127.0.0.1:{port}",
        str(CONNECTIONS),
        str(size),
        str(duration_ms / 1000),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"loadgen failed with exit code {proc.returncode}")
    return json.loads(out)["round_trips"]


async def _serve_and_load(server, size: int, duration_ms: int) -> int:
    port = server.sockets[0].getsockname()[1]
    try:
        return await _load(port, size, duration_ms)
    finally:
        server.close()


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


def _streams(size: int):
    async def body(duration_ms: int) -> int:
        server = await asyncio.start_server(_stream_handler, "127.0.0.1", 0)
        return await _serve_and_load(server, size, duration_ms)

    return body


def _protocol(factory, size: int):
    async def body(duration_ms: int) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0)
        return await _serve_and_load(server, size, duration_ms)

    return body


def _echo(body) -> Workload:
    # Sizes are load durations in milliseconds.
    return Workload(body, 3000, 1500, "round trip", smoke_size=200)


WORKLOADS = {
    "TCP echo 1 KiB, streams": _echo(_streams(1024)),
    "TCP echo 10 KiB, streams": _echo(_streams(10 * 1024)),
    "TCP echo 100 KiB, streams": _echo(_streams(100 * 1024)),
    "TCP echo 1 KiB, Protocol": _echo(_protocol(_EchoProtocol, 1024)),
    "TCP echo 1 KiB, BufferedProtocol": _echo(_protocol(_EchoBufferedProtocol, 1024)),
}
