"""Streams, servers, Unix sockets, UDP, pipes and subprocesses, on asyncio and ferroloop alike.

On ferroloop these run CPython's own transports and protocols over the native poller and
scheduler; the assertions are the same for both loops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import pytest


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_tcp_echo_of_10_mb_in_odd_chunks(loop):
    payload = os.urandom(10 * 1024 * 1024)

    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert isinstance(writer.transport, asyncio.Transport)

        async def send():
            view, i, step = memoryview(payload), 0, 1
            while i < len(view):
                writer.write(view[i : i + step])
                i += step
                step = step * 7 % 65521 + 1  # odd, varying chunk sizes
                await writer.drain()
            writer.write_eof()

        received = bytearray()

        async def receive():
            while data := await reader.read(1 << 20):
                received.extend(data)

        await asyncio.gather(send(), receive())
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # let the server's handler see EOF and finish
        server.close()
        await server.wait_closed()
        return bytes(received)

    assert loop.run_until_complete(main()) == payload


def test_close_delivers_eof_to_the_peer(loop):
    async def main():
        got = loop.create_future()

        async def on_client(reader, writer):
            got.set_result(await reader.read())
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"last words")
        writer.close()
        await writer.wait_closed()
        data = await asyncio.wait_for(got, 10)
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"last words"


def test_unix_socket_echo(loop, tmp_path):
    path = str(tmp_path / "sock")

    async def main():
        server = await asyncio.start_unix_server(_echo, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"ping")
        data = await reader.readexactly(4)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # let the server's handler see EOF and finish
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"ping"


def test_udp_ping_pong(loop):
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data.upper(), addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.reply = loop.create_future()

        def datagram_received(self, data, addr):
            self.reply.set_result(data)

    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        client.sendto(b"ping")
        reply = await asyncio.wait_for(proto.reply, 10)
        client.close()
        server.close()
        return reply

    assert loop.run_until_complete(main()) == b"PING"


def test_sock_operations(loop):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, _ = await accept
        conn.setblocking(False)
        await loop.sock_sendall(client, b"x" * 100_000)
        received = b""
        while len(received) < 100_000:
            received += await loop.sock_recv(conn, 65536)
        for s in (client, conn, listener):
            s.close()
        return len(received)

    assert loop.run_until_complete(main()) == 100_000


def test_subprocess_cat_round_trip_of_10_mb(loop):
    data = os.urandom(10 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate(data)
        return out, proc.returncode

    assert loop.run_until_complete(main()) == (data, 0)


@pytest.mark.parametrize("how, code", [("kill", -signal.SIGKILL), ("terminate", -signal.SIGTERM)])
def test_subprocess_kill_and_terminate(loop, how, code):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        getattr(proc, how)()
        return await asyncio.wait_for(proc.wait(), 20)

    assert loop.run_until_complete(main()) == code


def test_a_hundred_short_lived_processes_at_once(loop):
    async def run(i):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"print({i})", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return int(out), proc.returncode

    async def main():
        return await asyncio.gather(*(run(i) for i in range(100)))

    assert loop.run_until_complete(main()) == [(i, 0) for i in range(100)]


def test_child_that_closes_its_stdout_early(loop):
    code = (
        "import os, sys, time; sys.stdout.write('bye'); sys.stdout.flush(); "
        "os.close(1); time.sleep(0.2)"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        data = await proc.stdout.read()
        return data, await proc.wait()

    assert loop.run_until_complete(main()) == (b"bye", 0)


def test_child_that_outlives_its_pipes(loop):
    # The child closes its stdout and keeps running: EOF arrives first, the exit code later.
    code = "import os, time; os.close(1); time.sleep(0.3)"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        assert await proc.stdout.read() == b""
        assert proc.returncode is None
        return await asyncio.wait_for(proc.wait(), 20)

    assert loop.run_until_complete(main()) == 0


def test_fd_used_by_a_transport_cannot_be_watched(loop):
    async def main():
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        fd = writer.transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, print)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # let the server's handler see EOF and finish
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_child_exits_are_watched_without_a_thread_per_child():
    # Python 3.11's default child watcher starts a thread per child; ferroloop watches pidfds.
    import threading

    import ferroloop
    from ferroloop._loop import _PIDFDS_WORK

    if not _PIDFDS_WORK:
        pytest.skip("no pidfd support here: asyncio's child watcher is used instead")

    async def main():
        before = threading.active_count()
        procs = [await asyncio.create_subprocess_exec("sleep", "0.2") for _ in range(20)]
        during = threading.active_count()
        codes = await asyncio.gather(*(p.wait() for p in procs))
        return during - before, codes

    assert ferroloop.run(main()) == (0, [0] * 20)


def test_children_are_watched_where_the_kernel_has_no_pidfds(loop_factory, monkeypatch):
    # A kernel before 5.3, or a sandbox whose seccomp filter refuses pidfd_open (valgrind does
    # too): asyncio falls back to its thread-per-child watcher, which Python 3.14 keeps on the
    # loop itself and older versions on the policy. ferroloop's probe ran at import.
    import errno

    def no_pidfds(*args):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfds, raising=False)
    monkeypatch.setattr("ferroloop._loop._PIDFDS_WORK", False)
    # 3.12 and 3.13 pick the policy's watcher once, by whether pidfds worked then.
    from ferroloop._loop import _get_policy

    if hasattr(_get_policy(), "_watcher"):
        monkeypatch.setattr(_get_policy(), "_watcher", None)
    code = "import sys; print(sys.stdin.read().upper()); sys.exit(3)"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(b"no pidfd"), 20)
        return out, proc.returncode

    loop = loop_factory()
    try:
        assert loop.run_until_complete(main()) == (b"NO PIDFD\n", 3)
    finally:
        loop.close()


def test_socket_factories_refuse_an_owned_fd_where_asyncio_does(loop):
    # Newer Pythons' _make_socket_transport first checks that no transport owns the fd.
    from asyncio import selector_events

    stdlib = selector_events.BaseSelectorEventLoop._make_socket_transport
    if "_ensure_fd_no_transport" not in stdlib.__code__.co_names:
        pytest.skip("this Python's asyncio creates the transport without that check")

    async def main():
        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop._make_socket_transport(a, asyncio.Protocol())
        finally:
            transport.close()
            b.close()

    loop.run_until_complete(main())
