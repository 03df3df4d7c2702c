"""TLS workloads: the TCP echo and the HTTP keep-alive hello over TLS, served with the loop's
`ssl=` support (asyncio's SSLProtocol over the loop's stream transport) and loaded from another
process: loadgen's rustls client for the echo, wrk over https for HTTP. rloop has no TLS."""

from __future__ import annotations

import functools
import ssl

from .base import Workload
from .network import _EchoProtocol, _http_hello, _protocol

_NO_TLS = {"rloop": "rloop 0.5.0 has no TLS support"}


@functools.cache
def _server_context() -> ssl.SSLContext:
    """A server context with a fresh certificate for localhost (the clients do not verify it)."""
    import trustme

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


def _tls_echo(size: int) -> Workload:
    body = _protocol(_EchoProtocol, size, ssl=_server_context, mode="tls")
    return Workload(body, 1500, 400, "round trip", smoke_size=200, unsupported=_NO_TLS, placed=True)


async def _https_hello(duration_ms: int) -> tuple[int, float]:
    return await _http_hello(duration_ms, ssl=_server_context())


WORKLOADS = {
    "TLS echo 1 KiB, Protocol": _tls_echo(1024),
    "TLS echo 100 KiB, Protocol": _tls_echo(100 * 1024),
    "HTTPS/1.1 keep-alive hello (wrk)": Workload(
        _https_hello, 2000, 1000, "request", smoke_size=1000, unsupported=_NO_TLS, placed=True
    ),
}
