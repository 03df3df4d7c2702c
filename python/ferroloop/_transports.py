"""The transports ferroloop's loop hands to protocols: socket streams (TCP, Unix), datagrams, pipes
and subprocesses.

What runs per packet (reads, writes, flushes, flow control) is native, in `_ferroloop.SocketStream`
and `_ferroloop.DatagramSocket`; these classes are the asyncio transports that protocols and
asyncio's own code see, with what runs per connection: set-up, extra info, the repr, error
reports, `connection_lost`. They follow CPython's `selector_events._SelectorSocketTransport` and
`_SelectorDatagramTransport`, and keep the private attributes asyncio's code reads (`_sock`,
`_sock_fd`, `_loop`, `_paused`, `_protocol_paused`, `_make_empty_waiter`, `_force_close`...).
"""

from __future__ import annotations

import inspect
import logging
import math
import selectors
import socket
import sys
import warnings
from asyncio import (
    base_events,
    constants,
    futures,
    selector_events,
    transports,
    trsock,
    unix_events,
)

from ._ferroloop import (
    DatagramSocket,
    SocketStream,
    datagram_sendto_method,
    is_closing_method,
    pipe_read_ready_method,
    pipe_write_methods,
    register_transport,
    set_nodelay,
    socket_transport_methods,
    sockname_or_none,
)

logger = logging.getLogger("asyncio")

# From Python 3.13, a server tracks its client transports: `_attach`/`_detach` take the transport.
_SERVER_TRACKS_CLIENTS = "transport" in inspect.signature(base_events.Server._attach).parameters


class _NativeTransport(transports._FlowControlMixin, transports.Transport):
    """What both transports share: CPython's `_SelectorTransport`, over a native core."""

    # `_core` is a slot, which the native per-message methods read at its offset; other
    # attributes live in the instance dict as on asyncio's transports.
    __slots__ = ("_core", "__dict__", "__weakref__")

    # Read by __del__, which runs even if __init__ raised.
    _sock = None

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        # CPython's _SelectorTransport.__init__ with what its stream and datagram subclasses add,
        # in one frame: it runs per connection. `_sock` is set last, once the native core exists:
        # from then on __del__ may warn about an unclosed transport, and the repr needs the core.
        if extra is None:
            extra = {}
        self._extra = extra
        self._loop = loop
        extra["socket"] = trsock.TransportSocket(sock)
        extra["sockname"] = sockname_or_none(sock)
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        self._sock_fd = fd = sock.fileno()
        self._high_water, self._low_water = 64 * 1024, 16 * 1024
        self._core = core = self._new_core(loop, sock, fd, protocol)
        self._server = server
        if server is not None:
            if _SERVER_TRACKS_CLIENTS:
                server._attach(self)
            else:
                server._attach()
        self._sock = sock
        register_transport(loop._transports, fd, self)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made() has run.
        loop.call_soon(core.start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            key = loop._fd_key(self._sock_fd)
            events = key.events if key is not None else 0
            info.append("read=polling" if events & selectors.EVENT_READ else "read=idle")
            state = "polling" if events & selectors.EVENT_WRITE else "idle"
            info.append(f"write=<{state}, bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # The protocol and reading.

    def set_protocol(self, protocol):
        self._core.protocol = protocol

    def get_protocol(self):
        return self._core.protocol

    @property
    def _protocol(self):
        return self._core.protocol

    def is_reading(self):
        return self._core.is_reading()

    def pause_reading(self):
        self._core.pause_reading()

    def resume_reading(self):
        self._core.resume_reading()

    @property
    def _paused(self):
        # Python 3.9 and 3.10's sslproto reads it when a TLS write waits for a read.
        return self._core.reading_paused

    # Flow control of the write buffer.

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high=None, low=None):
        # _FlowControlMixin's defaults and checks; the native side compares integer sizes with
        # the floors of the marks, which orders them the same way.
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._core.set_write_buffer_limits(math.floor(high), math.floor(low))

    @property
    def _protocol_paused(self):
        return self._core.protocol_paused

    # Closing.

    def close(self):
        self._core.close()

    def abort(self):
        self._force_close(None)

    def _force_close(self, exc):
        self._core.force_close(exc)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=exc)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._core.protocol,
                }
            )
        self._force_close(exc)

    def _call_connection_lost(self, exc):
        core = self._core
        try:
            core.protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            core.detach()
            self._loop = None
            server = self._server
            if server is not None:
                if _SERVER_TRACKS_CLIENTS:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None


class SocketTransport(_NativeTransport):
    """A stream socket's transport (TCP or Unix), for `create_connection`, servers and friends."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def _new_core(self, loop, sock, fd, protocol):
        # Disable Nagle's algorithm: small writes leave without waiting for the peer's ACK.
        set_nodelay(sock)
        return SocketStream(loop, self, fd, protocol)

    # write and writelines are native method descriptors (below): they run per message.

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def _call_connection_lost(self, exc):
        # An override, as asyncio's _SelectorSocketTransport has: the name an error report
        # gives this callback is the class's.
        super()._call_connection_lost(exc)
        waiter = self._core.empty_waiter
        if waiter is not None:
            waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # sendfile: the loop waits for the buffer to drain, then sends the file on the socket.

    def _make_empty_waiter(self):
        return self._core.make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core.reset_empty_waiter()


class DatagramTransport(_NativeTransport, transports.DatagramTransport):
    """A datagram socket's transport, for `create_datagram_endpoint` (IPv4, IPv6 and Unix
    sockets, whose addresses the native side converts as the socket module does)."""

    FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._address = address
        super().__init__(loop, sock, protocol, waiter, extra, None)

    def _new_core(self, loop, sock, fd, protocol):
        connected = bool(self._extra["peername"])
        return DatagramSocket(loop, self, sock, protocol, self._address, connected)

    # sendto is a native method descriptor (below): it runs per datagram.


# asyncio's datagram transport pauses reading from Python 3.11, where the methods moved from its
# socket transport up to `_SelectorTransport`; before, they are `ReadTransport`'s, which raise
# NotImplementedError, and so are ferroloop's.
if "pause_reading" not in vars(selector_events._SelectorTransport):
    for _name in ("is_reading", "pause_reading", "resume_reading"):
        setattr(DatagramTransport, _name, getattr(transports.ReadTransport, _name))

# What runs per message is native, with no Python frame in front of the core's work.
_NativeTransport.is_closing = is_closing_method(_NativeTransport)
SocketTransport.write, SocketTransport.writelines = socket_transport_methods(SocketTransport)
DatagramTransport.sendto = datagram_sendto_method(DatagramTransport)


class ReadPipeTransport(unix_events._UnixReadPipeTransport):
    """asyncio's read pipe transport (subprocess pipes, `connect_read_pipe`), whose per-packet
    `_read_ready` is native: it reads into the thread's buffer instead of a fresh 256 KiB bytes
    object per packet, and otherwise does what asyncio's does, on the same attributes."""


ReadPipeTransport._read_ready = pipe_read_ready_method(ReadPipeTransport)


class WritePipeTransport(unix_events._UnixWritePipeTransport):
    """asyncio's write pipe transport (subprocess stdin, `connect_write_pipe`), whose per-packet
    `write` and `_write_ready` are native: they do what asyncio's do, on the same attributes."""


WritePipeTransport.write, WritePipeTransport._write_ready = pipe_write_methods(WritePipeTransport)


class SubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's subprocess transport, for the children the loop watches on a pidfd."""

    if sys.version_info < (3, 14):

        def close(self):
            # Python 3.14's close() (gh-114177): once the loop is closed (or the transport done
            # with it), the pipes are not closed through it, which would schedule their
            # connection_lost on a closed loop and raise, from __del__ too ("Exception ignored
            # ... Event loop is closed"); their own finalizers close the fds.
            if self._closed or (self._loop and not self._loop.is_closed()):
                return super().close()
            pipes, self._pipes = self._pipes, {}
            try:
                super().close()
            finally:
                self._pipes = pipes
