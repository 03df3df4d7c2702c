"""The bytes objects that reads hand to protocols, on asyncio and ferroloop alike: each holds its
own read's contents for as long as anybody keeps it (itself, a memoryview of it, a slice), and
hashes as its contents do. ferroloop rewrites, for the next read of the same length, a bytes
object that nobody kept, and stream and pipe reads go straight into it, with whatever does not fit
after it in a buffer of their own; so these reads come in runs of one length and in lengths shorter
and longer than the one before."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket

from conftest import peer_sendto
from test_transports import _pair

# Runs of one length, and lengths shorter and longer than the one before, on both sides of the
# 4 KiB from which stream and pipe reads, once a length repeats, go straight into the bytes object
# left unkept (Keeper drops the reads numbered 0 and 3 modulo 4).
LENGTHS = [512, 512, 300, 512, 700, 700, 30000, 512]
LENGTHS += [8192] * 7 + [6000, 6000, 9000, 9000, 5000, 5000, 4500, 512]
CHUNKS = [bytes([65 + i]) * n for i, n in enumerate(LENGTHS)]


class Keeper:
    """Keeps some of what it receives (whole, as a memoryview, as a slice), drops the rest, and
    notes a copy and the hash of everything."""

    def __init__(self, loop):
        self.kept = []
        self.copies = []
        self.hashes = []
        self.arrived = asyncio.Queue()

    def take(self, data):
        index = len(self.copies)
        self.copies.append(bytes(bytearray(data)))
        self.hashes.append(hash(data))
        if index % 4 == 1:
            self.kept.append((index, data))
        elif index % 4 == 2:
            self.kept.append((index, memoryview(data)))
        elif index % 4 == 3:
            self.kept.append((index, data[100:]))
        self.arrived.put_nowait(None)

    def check(self):
        copies_right = self.copies == [c for c in CHUNKS[: len(self.copies)]]
        hashes_right = self.hashes == [hash(bytes(bytearray(c))) for c in self.copies]
        kept_right = all(
            bytes(kept) == (CHUNKS[i][100:] if i % 4 == 3 else CHUNKS[i]) for i, kept in self.kept
        )
        return len(self.copies), copies_right, hashes_right, kept_right


class StreamKeeper(Keeper, asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.take(data)


class DatagramKeeper(Keeper, asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.take(data)


async def _feed(proto, send):
    """Sends each chunk and waits until the protocol has it: each chunk is a read of its own."""
    for chunk in CHUNKS:
        await send(chunk)
        await asyncio.wait_for(proto.arrived.get(), 10)


def test_stream_reads_keep_their_contents_and_hashes(loop):
    async def main():
        transport, proto, peer = await _pair(loop, lambda: StreamKeeper(loop))
        await _feed(proto, lambda chunk: loop.sock_sendall(peer, chunk))
        transport.close()
        peer.close()
        return proto.check()

    assert loop.run_until_complete(main()) == (len(CHUNKS), True, True, True)


def test_datagrams_keep_their_contents_and_hashes(loop):
    async def main():
        transport, proto = await loop.create_datagram_endpoint(
            lambda: DatagramKeeper(loop), local_addr=("127.0.0.1", 0)
        )
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.setblocking(False)
        here = transport.get_extra_info("sockname")
        await _feed(proto, lambda chunk: peer_sendto(loop, peer, chunk, here))
        transport.close()
        peer.close()
        return proto.check()

    assert loop.run_until_complete(main()) == (len(CHUNKS), True, True, True)


def test_pipe_reads_keep_their_contents_and_hashes(loop):
    async def main():
        read_end, write_end = os.pipe()
        transport, proto = await loop.connect_read_pipe(
            lambda: StreamKeeper(loop), os.fdopen(read_end, "rb", 0)
        )

        async def send(chunk):
            os.write(write_end, chunk)

        await _feed(proto, send)
        os.close(write_end)
        transport.close()
        return proto.check()

    assert loop.run_until_complete(main()) == (len(CHUNKS), True, True, True)


class Collector(asyncio.Protocol):
    def __init__(self):
        self.chunks = []
        self.lost = asyncio.Event()

    def data_received(self, data):
        self.chunks.append(data)

    def connection_lost(self, exc):
        self.lost.set()


def test_a_full_read_takes_no_more_than_asyncios_max_size(loop):
    """With 768 KiB waiting in a pipe, one read takes a large part of it, never more than
    asyncio's `max_size` (ferroloop's stream and pipe reads stop 2 KiB short of it: read_bytes.rs),
    and everything arrives in order."""
    payload = bytes(range(256)) * (3 * 1024)  # 768 KiB
    read_end, write_end = os.pipe()
    # 1 MiB: the most an unprivileged process may give a pipe by default (fs.pipe-max-size).
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    assert os.write(write_end, payload) == len(payload)
    os.close(write_end)

    async def main():
        transport, proto = await loop.connect_read_pipe(Collector, os.fdopen(read_end, "rb", 0))
        await asyncio.wait_for(proto.lost.wait(), 10)
        return [len(c) for c in proto.chunks], b"".join(proto.chunks)

    sizes, received = loop.run_until_complete(main())
    assert received == payload
    assert max(sizes) <= 256 * 1024
    assert sizes[0] >= 200 * 1024
