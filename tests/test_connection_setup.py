"""A connection's set-up as asyncio does it: what the accepted socket, the transport's extra info,
TCP_NODELAY and `loop._transports` come out as, on both loops; and the native helpers ferroloop's
set-up calls (src/net/connection_setup.rs) against the Python they stand for."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import textwrap
import weakref

import pytest
from ferroloop import _ferroloop
from ferroloop._loop import _ListeningSocket


class _Keep(asyncio.Protocol):
    def __init__(self, made):
        self.made = made

    def connection_made(self, transport):
        self.made.put_nowait(transport)


async def _serve_one(loop, *, sock=None, family=socket.AF_INET, path=None):
    """A server (on `sock`, a Unix `path`, or 127.0.0.1), one client connected to it, and the
    server side's transport."""
    made = asyncio.Queue()
    if path is not None:
        server = await loop.create_unix_server(lambda: _Keep(made), path)
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
    elif sock is not None:
        server = await loop.create_server(lambda: _Keep(made), sock=sock)
        client = socket.create_connection(sock.getsockname()[:2])
    else:
        server = await loop.create_server(lambda: _Keep(made), "127.0.0.1", 0, family=family)
        client = socket.create_connection(server.sockets[0].getsockname()[:2])
    transport = await asyncio.wait_for(made.get(), 10)
    return server, client, transport


async def _close(server, client, transport):
    transport.close()
    client.close()
    server.close()
    await server.wait_closed()


def _nodelay(sock) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_an_accepted_tcp_connection_as_asyncio_sets_it_up(loop):
    async def main():
        server, client, transport = await _serve_one(loop)
        sock = transport.get_extra_info("socket")
        raw = server.sockets[0]
        assert transport.get_extra_info("sockname") == raw.getsockname()
        assert transport.get_extra_info("peername") == client.getsockname()
        assert (sock.family, sock.type, sock.proto) == (raw.family, raw.type, raw.proto)
        assert isinstance(sock.family, socket.AddressFamily)
        assert sock.gettimeout() == 0
        assert _nodelay(sock) != 0
        assert loop._transports[sock.fileno()] is transport
        await _close(server, client, transport)

    loop.run_until_complete(main())


def test_a_listening_socket_of_protocol_0_gives_connections_without_nodelay(loop):
    # asyncio's _set_nodelay asks for proto == IPPROTO_TCP, and a socket made without one (and
    # those it accepts) has proto 0: so asyncio leaves Nagle's algorithm on there.
    async def main():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        server, client, transport = await _serve_one(loop, sock=listener)
        sock = transport.get_extra_info("socket")
        assert sock.proto == 0
        assert _nodelay(sock) == 0
        await _close(server, client, transport)

    loop.run_until_complete(main())


def test_a_unix_connection_gets_its_addresses_and_no_nodelay(loop, tmp_path):
    async def main():
        path = str(tmp_path / "s")
        server, client, transport = await _serve_one(loop, path=path)
        assert transport.get_extra_info("sockname") == path
        assert transport.get_extra_info("peername") == ""
        await _close(server, client, transport)

    loop.run_until_complete(main())


def test_a_socket_subclass_accepts_through_its_own_accept(loop):
    calls = []

    class Listener(socket.socket):
        def accept(self):
            conn, address = super().accept()
            calls.append(address)
            return conn, address

    async def main():
        listener = Listener(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        server, client, transport = await _serve_one(loop, sock=listener)
        assert calls == [client.getsockname()]
        await _close(server, client, transport)

    loop.run_until_complete(main())


def test_a_patched_socket_accept_is_what_accepts(loop, monkeypatch):
    calls = []
    accept = socket.socket.accept

    def patched(self):
        calls.append(self.fileno())
        return accept(self)

    monkeypatch.setattr(socket.socket, "accept", patched)

    async def main():
        server, client, transport = await _serve_one(loop)
        assert calls[0] == server.sockets[0].fileno()
        await _close(server, client, transport)

    loop.run_until_complete(main())


def test_a_transport_leaves_the_loops_transports_when_it_is_gone(loop):
    async def main():
        server, client, transport = await _serve_one(loop)
        fd = transport.get_extra_info("socket").fileno()
        entry = loop._transports.data[fd]
        assert type(entry) is weakref.KeyedRef and entry.key == fd
        transport.close()
        await asyncio.sleep(0.05)
        del transport
        gc.collect()
        assert fd not in loop._transports
        client.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_a_transport_freed_after_its_fd_serves_another_leaves_that_ones_entry(loop):
    # The fd number of a connection that is lost goes to the next one while the old transport
    # may still be held; freeing it later must not take the new transport's entry away.
    async def main():
        server, client, old = await _serve_one(loop)
        fd = old.get_extra_info("socket").fileno()
        made = old.get_protocol().made
        lost = loop.create_future()
        old.get_protocol().connection_lost = lambda exc: lost.set_result(exc)
        old.close()
        assert await asyncio.wait_for(lost, 10) is None
        client.close()
        clients = []
        while True:  # the lowest free number goes to the next socket; the client's comes first
            clients.append(socket.create_connection(server.sockets[0].getsockname()[:2]))
            new = await asyncio.wait_for(made.get(), 10)
            if new.get_extra_info("socket").fileno() == fd:
                break
            assert len(clients) < 4
        assert loop._transports[fd] is new
        del old
        gc.collect()
        assert loop._transports[fd] is new
        for c in clients[:-1]:
            c.close()
        await _close(server, clients[-1], new)

    loop.run_until_complete(main())


def test_a_patched_socket_init_makes_the_accepted_sockets(loop, monkeypatch):
    made = []
    init = socket.socket.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(socket.socket, "__init__", patched)

    async def main():
        server, client, transport = await _serve_one(loop)
        assert transport.get_extra_info("socket").fileno() in [s.fileno() for s in made]
        await _close(server, client, transport)

    loop.run_until_complete(main())


# The native helpers, each against what it stands for.


@pytest.mark.parametrize(
    "setitem", [_ferroloop.register_transport, lambda d, k, v: d.__setitem__(k, v)]
)
def test_register_transport_does_what_weak_value_dictionary_setitem_does(setitem):
    class T:
        pass

    d = weakref.WeakValueDictionary()
    a, b, c = T(), T(), T()
    d[1], d[2] = a, b
    keys = iter(d.keys())
    next(keys)  # while it is iterated, a removal waits (Python 3.9-3.13)
    del b
    gc.collect()
    setitem(d, 3, c)
    keys.close()
    assert sorted(d.keys()) == [1, 3]
    assert d[3] is c and type(d.data[3]) is weakref.KeyedRef and d.data[3].key == 3
    del c
    gc.collect()
    assert sorted(d.keys()) == [1]

    class Plain(dict):
        pass

    other = Plain()
    _ferroloop.register_transport(other, 5, a)
    assert other == {5: a}


@pytest.mark.parametrize(
    ("family", "address"),
    [(socket.AF_INET, ("127.0.0.1", 0)), (socket.AF_INET6, ("::1", 0))],
)
def test_sockname_or_none_is_getsockname(family, address):
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind(address)
    except OSError:
        pytest.skip(f"no {family.name} on this machine")
    with sock:
        assert _ferroloop.sockname_or_none(sock) == sock.getsockname()
    assert _ferroloop.sockname_or_none(sock) is None  # closed: getsockname raises OSError
    with socket.socket() as unbound:
        assert _ferroloop.sockname_or_none(unbound) == unbound.getsockname() == ("0.0.0.0", 0)
    a, b = socket.socketpair()
    with a, b:
        assert _ferroloop.sockname_or_none(a) == a.getsockname() == ""


@pytest.mark.parametrize("default_timeout", [None, 2.5])
@pytest.mark.parametrize("listener_timeout", [0.0, None, 4.0])
def test_accept_connection_is_socket_accept(default_timeout, listener_timeout):
    # socket.socket.accept makes the new socket blocking when the listening socket has a timeout
    # and there is no default; the native accept must give the same socket.
    results = []
    old_default = socket.getdefaulttimeout()
    try:
        for accept in (socket.socket.accept, _ferroloop.accept_connection):
            socket.setdefaulttimeout(None)
            listener = socket.create_server(("127.0.0.1", 0))
            listener.settimeout(listener_timeout)
            client = socket.create_connection(listener.getsockname())
            socket.setdefaulttimeout(default_timeout)
            conn, address = accept(listener)
            results.append(
                (
                    type(conn),
                    conn.family,
                    conn.type,
                    conn.proto,
                    conn.gettimeout(),
                    conn._io_refs,
                    conn._closed,
                    address == client.getsockname(),
                )
            )
            for s in (conn, client, listener):
                s.close()
    finally:
        socket.setdefaulttimeout(old_default)
    assert results[0] == results[1]
    assert results[0][-1]


def test_accept_connection_raises_what_accept_raises():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    with listener:
        with pytest.raises(BlockingIOError) as native:
            _ferroloop.accept_connection(listener)
        with pytest.raises(BlockingIOError) as plain:
            listener.accept()
        assert native.value.errno == plain.value.errno
    with pytest.raises(OSError) as native:
        _ferroloop.accept_connection(listener)
    with pytest.raises(OSError) as plain:
        listener.accept()
    assert (type(native.value), native.value.errno) == (type(plain.value), plain.value.errno)


def test_the_listening_socket_in_asyncios_accept_looks_like_the_socket():
    sock = socket.create_server(("127.0.0.1", 0))
    with sock:
        wrapped = _ListeningSocket(sock)
        assert repr(wrapped) == repr(sock)
        assert wrapped.fileno() == sock.fileno()
        assert repr(asyncio.trsock.TransportSocket(wrapped)) == repr(
            asyncio.trsock.TransportSocket(sock)
        )


# A server out of fds: asyncio's _accept_connection reports it with the listening socket, stops
# accepting and retries a second later (ACCEPT_RETRY_DELAY), which passes the socket it was
# given, on ferroloop the wrapper, back to _start_serving. Run in a child: it lowers RLIMIT_NOFILE.
OUT_OF_FDS_PROGRAM = textwrap.dedent(
    """
    import asyncio, os, resource, socket, sys
    import ferroloop

    async def main():
        loop = asyncio.get_running_loop()
        reports = []
        loop.set_exception_handler(lambda loop, context: reports.append(context))
        made = []

        class Keep(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        server = await loop.create_server(Keep, "127.0.0.1", 0)
        listener = server.sockets[0]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        await asyncio.sleep(0.3)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print(len(made) < 3, len(reports) > 0)
        print(sorted({(report["message"], type(report["exception"]).__name__,
                       report["exception"].errno, repr(report["socket"]) == repr(listener))
                      for report in reports}))
        await asyncio.sleep(1.3)
        print(len(made))
        for s in clients + made:
            s.close()
        server.close()
        await server.wait_closed()

    (ferroloop.run if sys.argv[1] == "ferroloop" else asyncio.run)(main())
    """
)


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_a_server_out_of_fds_reports_it_and_accepts_again_later(loop_name):
    out = subprocess.run(
        [sys.executable, "-c", OUT_OF_FDS_PROGRAM, loop_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "True True",
        "[('socket.accept() out of system resource', 'OSError', 24, True)]",
        "3",
    ]
