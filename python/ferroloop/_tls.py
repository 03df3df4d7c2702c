"""TLS on ferroloop's loop: `asyncio.sslproto`'s protocol (the design of Python 3.11 and later),
native.

TLS itself is Python's `ssl` module: an `ssl.SSLObject` over two `ssl.MemoryBIO`s, made by the
user's `SSLContext`, so every setting of the context applies as it does on asyncio. The state
machine around it (handshake, application data, flushing, shutdown, their timeouts), the write
backlog and both directions of flow control are `_ferroloop.TlsProtocol`. The application's
transport is asyncio's own `_SSLProtocolTransport`, whose methods forward to the protocol, with
its per-message `write` native.

Python 3.9 and 3.10 have another design of `sslproto` (`_SSLPipe`); there the loop keeps
asyncio's protocol over the native stream transport.
"""

from __future__ import annotations

import sys
from asyncio import protocols, sslproto

from ._ferroloop import TlsProtocol, tls_write_method

NATIVE = sys.version_info >= (3, 11)


class SSLTransport(sslproto._SSLProtocolTransport):
    """The transport a TLS connection's protocol sees: asyncio's, with a native `write`."""

    def _test__append_write_backlog(self, data):
        # asyncio's hook for its own tests, which appends to the protocol's backlog deque; here
        # the backlog is native.
        self._ssl_protocol._append_write_backlog(data)


SSLTransport.write = tls_write_method(SSLTransport)


class SSLProtocol(TlsProtocol, protocols.BufferedProtocol):
    """asyncio's `sslproto.SSLProtocol`, over the native core; same arguments, same behaviour."""

    _app_transport_class = SSLTransport

    def __init__(self, *args, **kwargs):
        # The core took the arguments; the application's transport exists from the start.
        self._get_app_transport()


if not NATIVE:
    SSLProtocol = sslproto.SSLProtocol  # noqa: F811
