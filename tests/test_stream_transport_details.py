"""The stream transport's finer contracts, on asyncio and ferroloop alike: the edges of reading
(full buffers, EOF arriving with data), writelines, the errors and messages of misuse, flow-control
failures, writes after the connection is lost, and what the transport object is."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
import weakref
from asyncio import transports, trsock

import pytest
from test_transports import Recorder, _pair


class TinyBufferProtocol(asyncio.BufferedProtocol):
    """Hands out 7 bytes at a time: every read fills the buffer, so the socket is never drained
    by one read and the loop must call the reader again (level-triggered)."""

    def __init__(self, loop):
        self.buf = bytearray(7)
        self.data = bytearray()
        self.eof = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.eof.set_result(None)

    def connection_lost(self, exc):
        pass


def test_a_buffer_filled_by_every_read_still_gets_all_data_and_eof(loop):
    async def main():
        transport, proto, peer = await _pair(loop, lambda: TinyBufferProtocol(loop))
        payload = bytes(range(256)) * 40
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(proto.eof, 10)
        transport.close()
        peer.close()
        return bytes(proto.data) == payload

    assert loop.run_until_complete(main())


def test_more_than_one_read_buffer_at_once_then_eof(loop):
    # 1 MiB sent before the loop looks: reads of 256 KiB fill the read buffer, so the loop must
    # come back for the rest, then see the EOF that arrived with it.
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.pause_reading()
        payload = b"x" * (1 << 20)
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.05)
        transport.resume_reading()
        await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return len(proto.data), proto.events[-2:]

    assert loop.run_until_complete(main()) == (1 << 20, ["eof", "lost"])


class _Bytes(bytes):
    pass


@pytest.mark.parametrize("method", ["write", "writelines"])
def test_every_kind_of_bytes_like_object_is_sent_in_order(loop, method):
    # ferroloop reads an exact bytes object in place and everything else through the buffer
    # protocol; writelines sends them all in one vectored send.
    chunks = [b"ab", _Bytes(b"cd"), bytearray(b"ef"), memoryview(b"xxgh")[2:], b"", b"i"]

    async def main():
        transport, proto, peer = await _pair(loop)
        if method == "write":
            for data in chunks:
                transport.write(data)
        else:
            transport.writelines(chunks)
        transport.write_eof()
        received = bytearray()
        while chunk := await loop.sock_recv(peer, 100):
            received += chunk
        transport.close()
        peer.close()
        return bytes(received)

    assert loop.run_until_complete(main()) == b"abcdefghi"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11's writelines joins the chunks first")
def test_writelines_rejects_str_with_the_join_message(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        try:
            with pytest.raises(TypeError) as info:
                transport.writelines([b"ok", "text"])
            return str(info.value)
        finally:
            transport.close()
            peer.close()

    assert (
        loop.run_until_complete(main())
        == "sequence item 1: expected a bytes-like object, str found"
    )


def test_write_after_write_eof_and_during_sendfile_are_refused(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        waiter = transport._make_empty_waiter()
        await waiter
        with pytest.raises(RuntimeError) as during_sendfile:
            transport.write(b"x")
        with pytest.raises(RuntimeError) as second_waiter:
            transport._make_empty_waiter()
        transport._reset_empty_waiter()
        transport.write_eof()
        with pytest.raises(RuntimeError) as after_eof:
            transport.write(b"x")
        transport.close()
        peer.close()
        return str(during_sendfile.value), str(second_waiter.value), str(after_eof.value)

    assert loop.run_until_complete(main()) == (
        "unable to write; sendfile is in progress",
        "Empty waiter is already set",
        "Cannot call write() after write_eof()",
    )


def test_a_failing_pause_writing_goes_to_the_exception_handler(loop):
    class FailingPause(Recorder):
        def pause_writing(self):
            raise ZeroDivisionError

    async def main():
        reports = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        transport, proto, peer = await _pair(loop, lambda: FailingPause(loop))
        transport.set_write_buffer_limits(high=0)
        transport.write(b"x" * (8 << 20))  # more than the socket takes at once
        paused = transport._protocol_paused
        transport.abort()
        peer.close()
        await proto.lost
        return paused, reports

    paused, reports = loop.run_until_complete(main())
    assert paused
    assert len(reports) == 1
    assert reports[0]["message"] == "protocol.pause_writing() failed"
    assert isinstance(reports[0]["exception"], ZeroDivisionError)
    assert isinstance(reports[0]["transport"], asyncio.Transport)


def test_write_buffer_limits_are_checked_as_asyncio_checks_them(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        try:
            transport.set_write_buffer_limits(high=100)
            limits = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(low=10)
            limits_from_low = transport.get_write_buffer_limits()
            with pytest.raises(ValueError) as info:
                transport.set_write_buffer_limits(high=1, low=2)
            return limits, limits_from_low, str(info.value)
        finally:
            transport.close()
            peer.close()

    assert loop.run_until_complete(main()) == (
        (25, 100),
        (10, 40),
        "high (1) must be >= low (2) must be >= 0",
    )


def test_writes_after_the_connection_is_lost_are_dropped_then_logged(loop, caplog):
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.abort()
        await proto.lost
        peer.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                transport.write(b"lost")
        return [r.getMessage() for r in caplog.records if r.name == "asyncio"]

    # asyncio counts the loss as the first "write"; the warning starts at the fifth.
    assert loop.run_until_complete(main()) == ["socket.send() raised exception."] * 3


def test_eof_received_returning_true_keeps_the_write_side_open(loop):
    class HalfClose(Recorder):
        def eof_received(self):
            super().eof_received()
            self.transport.write(b"bye")
            self.transport.close()
            return True

    async def main():
        transport, proto, peer = await _pair(loop, lambda: HalfClose(loop))
        peer.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := await loop.sock_recv(peer, 100):
            received += chunk
        await proto.lost
        peer.close()
        return bytes(received), proto.events

    assert loop.run_until_complete(main()) == (b"bye", ["made", "eof", "lost"])


def test_what_the_transport_is(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        try:
            return (
                isinstance(transport, asyncio.Transport),
                isinstance(transport, transports._FlowControlMixin),
                isinstance(transport.get_extra_info("socket"), trsock.TransportSocket),
                transport.get_extra_info("peername") == peer.getsockname(),
                transport.can_write_eof(),
                repr(transport).endswith(" read=polling write=<idle, bufsize=0>>"),
                transport.get_protocol() is proto,
                weakref.ref(transport)() is transport,
                _takes_attributes(transport),
            )
        finally:
            transport.close()
            peer.close()

    assert loop.run_until_complete(main()) == (True,) * 9


def _takes_attributes(transport):
    # Code that rides along on a transport (a server's bookkeeping, a test's marker) sets
    # attributes of its own on it, as asyncio's transports allow.
    transport.user_note = "kept"
    return transport.user_note == "kept" and "user_note" in vars(transport)


def test_ferroloop_per_message_methods_are_made_only_for_classes_with_the_core_slot():
    from ferroloop._ferroloop import socket_transport_methods

    # The native methods read `_core` at the slot offset of ferroloop's transports: a class
    # that keeps it elsewhere gets no such methods.
    class NoSlot:
        _core = None

    class ElsewhereSlot:
        __slots__ = ("_before", "_also_before", "_core")

    with pytest.raises(TypeError, match=r"NoSlot._core must be a slot"):
        socket_transport_methods(NoSlot)
    with pytest.raises(TypeError, match=r"ElsewhereSlot._core is not where"):
        socket_transport_methods(ElsewhereSlot)


def test_ferroloop_transport_methods_need_the_native_core():
    from ferroloop._transports import DatagramTransport, SocketTransport

    # Before __init__ has run, the per-message methods find no core and say so as an attribute
    # read would, rather than reading memory that is not there.
    with pytest.raises(AttributeError, match="_core"):
        SocketTransport.__new__(SocketTransport).write(b"x")
    with pytest.raises(AttributeError, match="_core"):
        DatagramTransport.__new__(DatagramTransport).sendto(b"x", ("127.0.0.1", 9))
    with pytest.raises(AttributeError, match="_core"):
        SocketTransport.__new__(SocketTransport).is_closing()


def test_a_socket_closed_behind_the_loops_back_gives_an_error(loop):
    async def main():
        transport, proto, peer = await _pair(loop)
        transport.pause_reading()
        # Behind the loop's back: the socket object lets go of the fd, which is then closed; the
        # transport still writes to that number.
        os.close(transport.get_extra_info("socket")._sock.detach())
        transport.write(b"x")
        exc = await asyncio.wait_for(proto.lost, 10)
        peer.close()
        return type(exc), getattr(exc, "errno", None)

    assert loop.run_until_complete(main()) == (OSError, errno.EBADF)
