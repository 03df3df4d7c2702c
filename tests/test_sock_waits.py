"""The waits of the sock_* calls over a socket's life: again and again on one socket, on numbers
closed and opened again, on files a `dup` keeps open, and on sockets handed to other watchers
afterwards. ferroloop keeps such a wait's registration when it ends (edge-triggered, "The sock_*
calls' waits" in docs/design.md); asyncio removes it. Programs must not tell the difference."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import struct
import time
import weakref

from conftest import nonblocking_pair, recorded_warnings, run_turns


def test_a_socket_waited_on_for_every_message_gets_each_one(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:

            async def player(sock, serves: bool):
                got = []
                if serves:
                    await loop.sock_sendall(sock, b"0")
                while len(got) < 500:
                    # Each recv waits: the other side sends only after this side's last send.
                    got.append(int(await loop.sock_recv(sock, 16)))
                    await loop.sock_sendall(sock, b"%d" % (got[-1] + 1))
                return got

            first, second = await asyncio.gather(player(a, True), player(b, False))
        assert second == list(range(0, 1000, 2))
        assert first == list(range(1, 1000, 2))

    loop.run_until_complete(main())


def test_sockets_closed_between_waits_and_their_numbers_opened_again(loop):
    async def main():
        numbers = set()
        for i in range(50):
            a, b = nonblocking_pair()
            numbers.add(a.fileno())
            loop.call_later(0.001, b.send, b"%d" % i)
            assert await asyncio.wait_for(loop.sock_recv(a, 16), 5) == b"%d" % i
            a.close()
            b.close()
        return numbers

    numbers = loop.run_until_complete(main())
    assert len(numbers) < 50, "the test meant to reuse numbers"


def test_a_file_still_open_elsewhere_after_its_wait_does_not_wake_the_next_one(loop):
    """After a wait on `a`, `a` is closed while a duplicate keeps its file open, and a new socket
    takes its number: data for the old file calls nothing and keeps nothing busy."""
    calls = []

    async def main():
        a, old_peer = nonblocking_pair()
        loop.call_later(0.001, old_peer.send, b"x")
        assert await loop.sock_recv(a, 16) == b"x"
        duplicate = a.dup()
        number = a.fileno()
        a.close()
        new, new_peer = nonblocking_pair()
        with duplicate, old_peer, new, new_peer:
            assert new.fileno() == number, "the new socket should take the closed number"
            loop.add_reader(new, calls.append, "new socket readable")
            cpu = time.process_time()
            for _ in range(20):
                old_peer.send(b"for the old file")
                await asyncio.sleep(0.01)
            cpu = time.process_time() - cpu
            loop.remove_reader(new)
            # The new socket still works.
            loop.call_later(0.001, new_peer.send, b"y")
            assert await asyncio.wait_for(loop.sock_recv(new, 16), 5) == b"y"
        return cpu

    cpu = loop.run_until_complete(main())
    assert calls == []
    assert cpu < 0.15, f"{cpu:.3f} s of CPU in 0.2 s of sleeps"


def test_a_socket_idle_after_its_wait_does_not_keep_the_loop_busy(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            loop.call_later(0.001, b.send, b"x")
            assert await loop.sock_recv(a, 16) == b"x"
            cpu = time.process_time()
            for _ in range(20):
                b.send(b"unread")
                await asyncio.sleep(0.01)
            return time.process_time() - cpu, a.recv(4096)

    cpu, unread = loop.run_until_complete(main())
    assert unread == b"unread" * 20
    assert cpu < 0.15, f"{cpu:.3f} s of CPU in 0.2 s of sleeps"


def test_a_socket_dropped_after_its_wait_is_not_kept_alive(loop):
    async def main():
        a, b = nonblocking_pair()
        loop.call_later(0.001, b.send, b"x")
        assert await loop.sock_recv(a, 16) == b"x"
        b.close()
        return weakref.ref(a)

    # The unclosed socket's ResourceWarning is recorded here and dropped.
    with recorded_warnings():
        ref = loop.run_until_complete(main())
        gc.collect()
    assert ref() is None


def test_after_its_waits_a_socket_is_watched_level_triggered_by_others(loop):
    """A reader added with add_reader is called in every turn while data is left unread, and a
    transport made on the socket gets its data, after sock_* waits on the same socket."""

    async def wait_once(sock, peer):
        loop.call_later(0.001, peer.send, b"w")
        assert await loop.sock_recv(sock, 16) == b"w"
        loop.call_later(0.001, peer.send, b"ww")
        await loop.sock_sendall(sock, b"s")
        assert await loop.sock_recv(sock, 16) == b"ww"

    a, b = nonblocking_pair()
    with a, b:
        loop.run_until_complete(wait_once(a, b))
        calls = []
        loop.add_reader(a, calls.append, 1)
        b.send(b"left unread")
        time.sleep(0.01)
        run_turns(loop, 3)
        assert calls == [1, 1, 1]
        loop.remove_reader(a)
        a.recv(4096)

    a, b = nonblocking_pair()
    received = []

    class Collect(asyncio.Protocol):
        def data_received(self, data):
            received.append(data)

    with b:
        loop.run_until_complete(wait_once(a, b))
        transport, _ = loop.run_until_complete(loop.create_connection(Collect, sock=a))
        b.send(b"to the transport")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            run_turns(loop)
        transport.close()
        run_turns(loop)
    assert b"".join(received) == b"to the transport"


def test_a_cancelled_wait_leaves_the_socket_to_the_next_one(loop):
    async def main():
        a, b = nonblocking_pair()
        with a, b:
            waiting = loop.create_task(loop.sock_recv(a, 16))
            await asyncio.sleep(0.01)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            assert waiting.cancelled()
            loop.call_later(0.001, b.send, b"next")
            assert await asyncio.wait_for(loop.sock_recv(a, 16), 5) == b"next"
            # And a partly sent sock_sendall goes through once the peer reads.
            big = b"z" * (8 << 20)
            sending = loop.create_task(loop.sock_sendall(a, big))
            got = bytearray()
            while len(got) < len(big):
                await asyncio.sleep(0)
                try:
                    got += b.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            await sending
            assert got == big

    loop.run_until_complete(main())


def reset_by_peer(sock) -> None:
    """Closes `sock` with a reset (SO_LINGER 0) rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def tcp_pair():
    """A connected TCP pair: (the client, blocking; the accepted side, non-blocking)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    return client, server


def test_an_error_met_by_a_waiting_call_is_raised_by_it(loop):
    async def fails(call, peer):
        loop.call_later(0.05, reset_by_peer, peer)
        try:
            await call
        except OSError as exc:
            return exc
        raise AssertionError("no error")

    async def main():
        client, server = tcp_pair()
        with server:
            read_error = await fails(loop.sock_recv(server, 16), client)
        client, server = tcp_pair()
        with server:
            # More than the socket buffers hold: the call waits, then meets the reset.
            write_error = await fails(loop.sock_sendall(server, b"x" * (64 << 20)), client)
        return read_error, write_error

    read_error, write_error = loop.run_until_complete(main())
    assert (type(read_error), read_error.errno) == (ConnectionResetError, errno.ECONNRESET)
    assert type(write_error) in (ConnectionResetError, BrokenPipeError)


def test_a_wait_left_pending_when_its_loop_closes_is_collected(loop):
    a, b = nonblocking_pair()
    with a, b:
        task = loop.create_task(loop.sock_recv(a, 16))
        run_turns(loop, 2)
        assert not task.done()
        task.cancel()
        run_turns(loop, 2)
        pending = loop.create_task(loop.sock_recv(a, 16))
        run_turns(loop, 2)
        ref = weakref.ref(pending)
        loop.close()
        del task, pending
        for _ in range(3):
            gc.collect()
        assert ref() is None


class Reluctant:
    """A socket whose methods say "not ready" the first `refusals` times they are called, ready
    or not (as the mock sockets of CPython's own tests do)."""

    def __init__(self, sock, refusals: int):
        self.sock = sock
        self.refusals = refusals
        self.calls = 0

    def fileno(self):
        return self.sock.fileno()

    def gettimeout(self):
        return self.sock.gettimeout()

    def _call(self, method, *args):
        self.calls += 1
        if self.calls <= self.refusals:
            raise BlockingIOError
        return getattr(self.sock, method)(*args)

    def recv(self, n):
        return self._call("recv", n)

    def send(self, data):
        return self._call("send", data)


def test_a_method_that_says_not_ready_while_the_socket_is_ready_is_called_again(loop):
    """asyncio retries in every turn while its level-triggered registration reports the socket;
    ferroloop's edge-triggered one is asked to report the socket again after each such answer."""

    async def main():
        a, b = nonblocking_pair()
        with a, b:
            b.send(b"waiting")
            reader = Reluctant(a, refusals=3)
            got = await asyncio.wait_for(loop.sock_recv(reader, 16), 5)
            writer = Reluctant(b, refusals=3)
            await asyncio.wait_for(loop.sock_sendall(writer, b"sent"), 5)
            return got, reader.calls, writer.calls, a.recv(16)

    assert loop.run_until_complete(main()) == (b"waiting", 4, 4, b"sent")
