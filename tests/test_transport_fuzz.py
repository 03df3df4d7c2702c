"""Random operations on TCP and TLS stream transports, against peers that write, read, close and
reset at random: whatever the interleaving, the protocol sees asyncio's contract.

- `connection_made` first, `connection_lost` exactly once and last;
- no `data_received`/`buffer_updated` while reading is paused, after `eof_received` or after
  `connection_lost`;
- `eof_received` once, unless the protocol kept the connection open and reading was paused and
  resumed after it (asyncio reads the EOF again then, and so must ferroloop);
- `pause_writing` and `resume_writing` alternate;
- nothing reaches the exception handler.

A close that waits forever is the peers' doing, not a loop's: both sides closed with data unsent
while neither reads, so each waits for the other to take its data, as on asyncio. The driver then
aborts the transport and still expects `connection_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import sys

import pytest

ROUNDS = 40
# On 3.9 and 3.10 TLS is asyncio's older sslproto on both loops, whose transport raises from
# pause_reading(), resume_reading() and is_reading() once the connection is lost while
# is_closing() still says False; a random driver trips over that, so there every round is TCP.
TLS_SHARE = 0.3 if sys.version_info >= (3, 11) else 0.0
CONNECTIONS_PER_ROUND = 4
PEERS_DONE: list = []


class Checker(asyncio.Protocol):
    def __init__(self, violations):
        self.violations = violations
        self.made = False
        self.paused = False
        self.eof = False
        self.resumed_since_eof = False
        self.writing_paused = False
        self.lost = asyncio.get_running_loop().create_future()

    def violated(self, what):
        self.violations.append(what)

    def connection_made(self, transport):
        if self.made:
            self.violated("connection_made twice")
        self.made = True
        self.transport = transport

    def pause(self):
        self.transport.pause_reading()
        self.paused = True

    def resume(self):
        self.paused = False
        self.resumed_since_eof = True
        self.transport.resume_reading()

    def data_received(self, data):
        if not self.made:
            self.violated("data before connection_made")
        if self.lost.done():
            self.violated("data after connection_lost")
        if self.paused:
            self.violated("data while paused")
        if self.eof:
            self.violated("data after eof")

    def eof_received(self):
        if self.lost.done():
            self.violated("eof after connection_lost")
        if self.eof and not self.resumed_since_eof:
            self.violated("eof twice")
        self.eof = True
        self.resumed_since_eof = False
        return random.random() < 0.5

    def pause_writing(self):
        if self.writing_paused:
            self.violated("pause_writing twice")
        self.writing_paused = True

    def resume_writing(self):
        if not self.writing_paused:
            self.violated("resume_writing while not paused")
        self.writing_paused = False

    def connection_lost(self, exc):
        if self.lost.done():
            self.violated("connection_lost twice")
        else:
            self.lost.set_result(exc)


class BufferedChecker(Checker, asyncio.BufferedProtocol):
    def __init__(self, violations):
        super().__init__(violations)
        self.buffer = bytearray(random.choice([1, 7, 4096, 65536]))

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data_received(None)


async def random_peer(reader, writer):
    """A `start_server` handler; the test waits for every one to finish."""
    done = asyncio.get_running_loop().create_future()
    PEERS_DONE.append(done)
    try:
        await _act_at_random(reader, writer)
    finally:
        writer.close()
        await _closed(writer)
        done.set_result(None)


async def _closed(writer):
    """Waits for the connection's end. A TLS close whose reading the stream had paused waits for
    the peer's close_notify without reading it (asyncio's sslproto, and so ferroloop): after a
    second it is aborted, as the driver aborts its own stuck closes."""
    try:
        await asyncio.wait_for(asyncio.shield(writer.wait_closed()), 1)
    except asyncio.TimeoutError:
        writer.transport.abort()
    except (ConnectionError, ssl.SSLError):
        return
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def _act_at_random(reader, writer):
    try:
        for _ in range(random.randrange(30)):
            action = random.random()
            if action < 0.4:
                writer.write(os.urandom(random.choice([1, 100, 70_000])))
            elif action < 0.7:
                await asyncio.wait_for(reader.read(random.choice([1, 65536])), 0.01)
            elif action < 0.75:
                writer.transport.abort()
                return
            elif action < 0.8:
                break
            else:
                await asyncio.sleep(0)
    except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
        pass


async def drive(loop, port, tls, violations, rnd):
    protocol_class = BufferedChecker if rnd.random() < 0.5 else Checker
    transport, protocol = await loop.create_connection(
        lambda: protocol_class(violations),
        "127.0.0.1",
        port,
        ssl=tls,
        server_hostname="localhost" if tls else None,
    )
    wrote_eof = False
    for _ in range(rnd.randrange(40)):
        if transport.is_closing():
            break
        action = rnd.random()
        if action < 0.3 and not wrote_eof:
            if action < 0.25:
                transport.write(os.urandom(rnd.choice([0, 1, 1000, 200_000])))
            else:
                transport.writelines([b"a" * 10, bytearray(5000), memoryview(b"c" * 3)])
        elif action < 0.4:
            protocol.pause()
        elif action < 0.5:
            protocol.resume()
        elif action < 0.55:
            transport.set_write_buffer_limits(high=rnd.choice([0, 10, 100_000]))
        elif action < 0.58 and transport.can_write_eof():
            wrote_eof = True
            try:
                transport.write_eof()
            except OSError:  # the peer reset the connection (ENOTCONN), as on asyncio
                pass
        elif action < 0.6:
            transport.close()
        elif action < 0.62:
            transport.abort()
        else:
            await asyncio.sleep(rnd.choice([0, 0, 0.001]))
        if not protocol.paused and not transport.is_closing() and not transport.is_reading():
            violations.append("is_reading() false while not paused")
    if not transport.is_closing():
        protocol.resume()
        if rnd.random() < 0.7:
            transport.close()
        else:
            transport.abort()
    try:
        await asyncio.wait_for(asyncio.shield(protocol.lost), 1)
    except asyncio.TimeoutError:
        transport.abort()
        await asyncio.wait_for(protocol.lost, 5)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_operations_keep_the_protocol_contract(loop, seed, server_ctx, client_ctx):
    rnd = random.Random(seed)
    random.seed(seed)
    PEERS_DONE.clear()
    violations, reported = [], []
    loop.set_exception_handler(lambda loop, context: reported.append(context))

    async def main():
        plain = await asyncio.start_server(random_peer, "127.0.0.1", 0)
        secure = await asyncio.start_server(random_peer, "127.0.0.1", 0, ssl=server_ctx)
        ports = {None: plain.sockets[0].getsockname()[1]}
        ports[client_ctx] = secure.sockets[0].getsockname()[1]
        for _ in range(ROUNDS):
            tls = client_ctx if rnd.random() < TLS_SHARE else None
            await asyncio.gather(
                *(
                    drive(loop, ports[tls], tls, violations, random.Random(rnd.random()))
                    for _ in range(CONNECTIONS_PER_ROUND)
                )
            )
        for server in (plain, secure):
            server.close()
            await server.wait_closed()
        # Every server-side connection is closed before the loop is (3.12's wait_closed would
        # wait for them; 3.9-3.11's does not).
        await asyncio.gather(*PEERS_DONE)

    loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert violations == []
    assert reported == []
