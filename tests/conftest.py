"""Shared fixtures: most tests run the same assertions on stdlib asyncio and on ferroloop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import warnings

import ferroloop
import pytest


def pytest_configure(config):
    if sys.flags.dev_mode:
        # Development mode (PYTHONDEVMODE=1, `make test-devmode`): a ResourceWarning, an unclosed
        # socket, transport or file freed by the collector, fails the test that meets it.
        config.addinivalue_line("filterwarnings", "error::ResourceWarning")
        config.addinivalue_line("filterwarnings", "error::pytest.PytestUnraisableExceptionWarning")
        if sys.version_info < (3, 11):
            # asyncio's sslproto before 3.11's rewrite, which both loops run there, warns when an
            # application transport whose connection the peer ended is freed unclosed.
            config.addinivalue_line(
                "filterwarnings",
                "ignore:unclosed transport <asyncio.sslproto._SSLProtocolTransport:ResourceWarning",
            )


LOOP_FACTORIES = {
    "asyncio": asyncio.SelectorEventLoop,
    "ferroloop": ferroloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_factory(request):
    return LOOP_FACTORIES[request.param]


# Runs of the loop the `loop` fixture makes after its test, before closing it: enough for a
# connection the test's last steps closed to finish (the peer's close read, then the callback that
# calls connection_lost). Closed with those pending, the loop would leave their transports and
# sockets to the garbage collector's ResourceWarnings, which development mode shows.
SETTLING_RUNS = 5


@pytest.fixture
def loop(loop_factory):
    loop = loop_factory()
    yield loop
    if not loop.is_closed():
        for _ in range(SETTLING_RUNS):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def pending_timers(loop) -> int:
    """How many timers sit in the loop's heap, cancelled ones included."""
    if isinstance(loop, ferroloop.EventLoop):
        return loop._queue_sizes()[1]
    return len(loop._scheduled)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for servers that cannot take port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nonblocking_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking sockets, as the loop's sock_* calls require."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@contextlib.contextmanager
def recorded_warnings():
    """Records every warning raised inside, into the list it gives, instead of showing it. An
    unclosed object's ResourceWarning that pytest recorded would keep the object, its source,
    alive (pytest shows them under PYTHONDEVMODE)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def collect_garbage() -> list:
    """Two full collections (the second frees what the first's finalizers let go), recording the
    warnings they raise (an unclosed loop's ResourceWarning) instead of showing them."""
    import gc

    with recorded_warnings() as caught:
        gc.collect()
        gc.collect()
    return caught


def run_turns(loop, n: int = 1) -> None:
    """Runs exactly `n` turns of the loop."""
    for _ in range(n):
        loop.stop()
        loop.run_forever()


# TLS: a certificate authority and contexts from trustme, made once per test session.


@pytest.fixture(scope="session")
def ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ctx(ca):
    """A server context for localhost and 127.0.0.1."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ctx(ca):
    """A client context that trusts the authority."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


async def echo_handler(reader, writer):
    """A `start_server` handler that echoes everything, then closes."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def start_tls_server(server_ctx, handler=echo_handler):
    """A TLS stream server on 127.0.0.1 (the echo by default), and its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    return server, server.sockets[0].getsockname()[1]


async def peer_sendto(loop, sock, data, addr) -> None:
    """`loop.sock_sendto`, new in Python 3.11; before it, a plain sendto (a datagram socket
    does not wait for room)."""
    if sys.version_info >= (3, 11):
        await loop.sock_sendto(sock, data, addr)
    else:
        sock.sendto(data, addr)


async def peer_recvfrom(loop, sock, size: int):
    """`loop.sock_recvfrom`, new in Python 3.11; before it, one recvfrom once a reader fires."""
    if sys.version_info >= (3, 11):
        return await loop.sock_recvfrom(sock, size)
    received = loop.create_future()
    loop.add_reader(sock, lambda: received.done() or received.set_result(sock.recvfrom(size)))
    try:
        return await received
    finally:
        loop.remove_reader(sock)
