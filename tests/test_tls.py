"""TLS on the native stream transport (issue 7's list), on asyncio and ferroloop alike: echo in odd
chunks, start_tls on both sides, client certificates, SNI, ALPN, what get_extra_info reports, and
the bad peers: a wrong host name, an expired certificate, a plain-TCP client, a handshake that never
finishes, a peer that drops mid-record; a server's start_tls with the handshake already buffered,
no cycle left by a failed handshake, and the shutdown timeout against a peer that stops reading.
Certificates come from trustme, made per test session."""

from __future__ import annotations

import asyncio
import datetime
import gc
import socket
import ssl
import sys
import threading
import weakref
from unittest import mock

import pytest
from conftest import start_tls_server

pytest.importorskip("trustme")

CHUNKS = [1, 7, 4096, 65537, 3, 1 << 20, 12345]


def test_tls_echo_of_odd_chunks_and_extra_info(loop, server_ctx, client_ctx):
    payload = b"".join(bytes([i % 251]) * n for i, n in enumerate(CHUNKS))

    async def main():
        server, port = await start_tls_server(server_ctx)
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            info = (
                isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject),
                writer.get_extra_info("peercert")["subjectAltName"][0],
                writer.get_extra_info("cipher")[1].startswith("TLSv1"),
                writer.get_extra_info("compression"),
            )

            async def send():
                offset = 0
                for n in CHUNKS:
                    writer.write(payload[offset : offset + n])
                    offset += n
                    await writer.drain()
                writer.write_eof() if writer.can_write_eof() else None

            sender = asyncio.create_task(send())
            echoed = await reader.readexactly(len(payload))
            await sender
            writer.close()
            await writer.wait_closed()
            return echoed == payload, info

    same, info = loop.run_until_complete(main())
    assert same
    assert info == (True, ("DNS", "localhost"), True, None)


async def _starttls_exchange(handler, client_ctx, wait_for_go: bool) -> bytes:
    """Serves `handler`; a client asks for TLS with a STARTTLS line (then waits for the server's
    GO, or starts its handshake at once), sends a line over TLS and returns the server's reply."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        if wait_for_go:
            assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"secret\n")
        reply = await reader.readline()
        writer.close()
        return reply


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
def test_start_tls_upgrades_both_sides(loop, server_ctx, client_ctx):
    async def main():
        upgraded = loop.create_future()

        async def handler(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            line = await reader.readline()
            upgraded.set_result(writer.get_extra_info("ssl_object") is not None)
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        reply = await _starttls_exchange(handler, client_ctx, wait_for_go=True)
        return reply, await upgraded

    assert loop.run_until_complete(main()) == (b"SECRET\n", True)


def test_client_certificates_are_required_and_checked(loop, ca, client_ctx):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    with_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(with_cert)
    ca.issue_cert("client@example.org").configure_cert(with_cert)

    async def main():
        seen = []

        async def handler(reader, writer):
            seen.append(writer.get_extra_info("peercert")["subjectAltName"])
            writer.close()

        reports = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=with_cert, server_hostname="localhost"
            )
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            # Without a certificate the server fails the handshake (TLS 1.3: after the client
            # thinks it is done) and drops the connection: the client reads EOF.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            writer.write(b"x")
            refused = await asyncio.wait_for(reader.read(10), 10)
            writer.close()
        failures = [r for r in reports if isinstance(r.get("exception"), ssl.SSLError)]
        return seen, refused, len(failures)

    # The failed handshake is an OSError: asyncio reports it in debug mode only (which
    # PYTHONDEVMODE turns on), and here it is off.
    loop.set_debug(False)
    assert loop.run_until_complete(main()) == ([(("email", "client@example.org"),)], b"", 0)


def test_sni_and_alpn(loop, ca, client_ctx):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "other.test").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    names = []
    server_ctx.sni_callback = lambda sslobj, name, ctx: names.append(name)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    client.set_alpn_protocols(["http/1.1"])

    async def main():
        server, port = await start_tls_server(server_ctx)
        async with server:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="other.test"
            )
            alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            writer.close()
            await writer.wait_closed()
            return alpn

    assert loop.run_until_complete(main()) == "http/1.1"
    assert names == ["other.test"]


def _verify_message(loop, server_ctx, client_ctx, server_hostname):
    """Connects to a TLS server and returns why the client refused its certificate."""

    async def main():
        server, port = await start_tls_server(server_ctx)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
                )
            return info.value.verify_message

    return loop.run_until_complete(main())


def test_wrong_host_name_fails_verification(loop, server_ctx, client_ctx):
    assert "Hostname mismatch" in _verify_message(loop, server_ctx, client_ctx, "wrong.test")


def test_expired_certificate_fails_verification(loop, ca, client_ctx):
    expired = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(
        "localhost",
        not_before=datetime.datetime(2000, 1, 1),
        not_after=datetime.datetime(2001, 1, 1),
    ).configure_cert(expired)
    message = _verify_message(loop, expired, client_ctx, "localhost")
    assert message == "certificate has expired"


def test_plain_tcp_client_to_a_tls_server_is_dropped(loop, server_ctx):
    async def main():
        reports, handled = [], []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))

        async def handler(reader, writer):
            handled.append(writer)

        server, port = await start_tls_server(server_ctx, handler)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            # The handshake fails on the HTTP bytes and the server drops the connection.
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
        return answer, handled, reports

    # The failure is an ssl.SSLError, an OSError: reported in debug mode only (which
    # PYTHONDEVMODE turns on), and here it is off.
    loop.set_debug(False)
    assert loop.run_until_complete(main()) == (b"", [], [])


def test_a_handshake_that_never_finishes_times_out(loop, client_ctx):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            with pytest.raises(ConnectionAbortedError) as info:
                await asyncio.open_connection(
                    "127.0.0.1",
                    listener.getsockname()[1],
                    ssl=client_ctx,
                    server_hostname="localhost",
                    ssl_handshake_timeout=0.2,
                )
            return str(info.value)
        finally:
            listener.close()

    message = loop.run_until_complete(main())
    assert message == "SSL handshake is taking longer than 0.2 seconds: aborting the connection"


def test_a_peer_that_drops_mid_record(loop, server_ctx, client_ctx):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def tls_then_drop():
            # A real TLS server, reached through a relay that cuts the stream mid-record.
            server, tls_port = await start_tls_server(server_ctx)
            conn, _ = await loop.sock_accept(listener)
            upstream = socket.create_connection(("127.0.0.1", tls_port))
            upstream.setblocking(False)
            conn.setblocking(False)

            async def pump(src, dst, limit=None):
                sent = 0
                while data := await loop.sock_recv(src, 65536):
                    if limit is not None and sent + len(data) > limit:
                        await loop.sock_sendall(dst, data[: limit - sent])
                        return True
                    await loop.sock_sendall(dst, data)
                    sent += len(data)
                return False

            up = asyncio.create_task(pump(conn, upstream))
            # Pass the handshake and 10 bytes of the first application record, then hang up.
            down = asyncio.create_task(pump(upstream, conn))
            await asyncio.sleep(0.3)
            down.cancel()
            await loop.sock_sendall(conn, b"\x17\x03\x03\x40\x00" + b"\0" * 10)
            conn.close()
            upstream.close()
            up.cancel()
            server.close()

        relay = asyncio.create_task(tls_then_drop())
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(100), 10)
        await relay
        writer.close()
        listener.close()
        return writer.is_closing()

    assert loop.run_until_complete(main())


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.9 and 3.10 run asyncio's own TLS protocol and start_tls"
)
def test_server_start_tls_takes_the_handshake_already_buffered(
    loop, loop_factory, server_ctx, client_ctx
):
    # The client asks for TLS and starts its handshake at once, so its first records reach the
    # server's stream buffer before the server calls start_tls: they belong to the handshake.
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info < (3, 14):
        pytest.skip(
            "asyncio moves the buffered records over from 3.14 (gh-142352); before, its "
            "handshake waits for them forever"
        )

    async def main():
        buffered = loop.create_future()

        async def handler(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            while not reader._buffer:  # the client's first records, right behind the line
                await asyncio.sleep(0.01)
            buffered.set_result(True)
            await writer.start_tls(server_ctx)
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        reply = await _starttls_exchange(handler, client_ctx, wait_for_go=False)
        return await buffered, reply

    assert loop.run_until_complete(asyncio.wait_for(main(), 10)) == (True, b"SECRET\n")


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.9 and 3.10 run asyncio's own TLS protocol and start_tls"
)
@pytest.mark.parametrize("upgrade", ["create_connection", "start_tls"])
def test_a_failed_handshake_leaves_no_cycle_behind(loop, loop_factory, server_ctx, upgrade):
    # With the collector off, the socket transport of a handshake that failed verification must
    # go when its last reference does (a cycle would keep it, and its socket, until a collection).
    if sys.version_info < (3, 14):
        if upgrade == "create_connection":
            pytest.skip(
                "before 3.14 the cycle is in asyncio's own create_connection code "
                "(gh-159049), which ferroloop runs as it is"
            )
        if loop_factory is asyncio.SelectorEventLoop:
            pytest.skip("asyncio's start_tls keeps the transport in a cycle until 3.14 (gh-159049)")
    if loop_factory is asyncio.SelectorEventLoop:
        from asyncio.sslproto import SSLProtocol
    else:
        from ferroloop._tls import SSLProtocol
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # trusts no test CA
    # (the default mode: debug mode's creation tracebacks hold frames, which on 3.14 keep
    # asyncio's transport until a collection; PYTHONDEVMODE turns debug mode on)
    loop.set_debug(False)
    transports = []
    connection_made = SSLProtocol.connection_made

    def remember_transport(protocol, transport):
        transports.append(weakref.ref(transport))
        connection_made(protocol, transport)

    async def fail_verification(port):
        if upgrade == "create_connection":
            with mock.patch.object(SSLProtocol, "connection_made", remember_transport):
                await loop.create_connection(
                    asyncio.Protocol, "127.0.0.1", port, ssl=untrusting, server_hostname="localhost"
                )
        else:
            transport, protocol = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            transports.append(weakref.ref(transport))
            await loop.start_tls(transport, protocol, untrusting, server_hostname="localhost")

    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            try:
                # (not pytest.raises: the exception it keeps would hold the frames)
                await fail_verification(server.sockets[0].getsockname()[1])
            except ssl.SSLCertVerificationError:
                return "failed verification"

    gc.collect()
    gc.disable()
    try:
        assert loop.run_until_complete(main()) == "failed verification"
        # (create_connection: the server side's transport is recorded too, and must go as well)
        assert transports
        assert [ref() for ref in transports] == [None] * len(transports)
    finally:
        gc.enable()


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.9 and 3.10 run asyncio's own TLS protocol"
)
@pytest.mark.parametrize("close_first", [True, False], ids=["close-then-eof", "eof-only"])
def test_shutdown_timeout_ends_a_connection_whose_peer_stops_reading(
    loop, loop_factory, server_ctx, client_ctx, close_first
):
    # The peer sends EOF (before or after our close()) but never reads what we queued: the
    # stream's close would flush forever, so ssl_shutdown_timeout must end the connection.
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info < (3, 14):
        pytest.skip("asyncio applies ssl_shutdown_timeout after the peer's EOF from 3.14")
    listener = socket.create_server(("127.0.0.1", 0))
    filled, done = threading.Event(), threading.Event()

    def server():
        sock, _ = listener.accept()
        with server_ctx.wrap_socket(sock, server_side=True) as tls:
            filled.wait(10)
            tls.shutdown(socket.SHUT_WR)  # EOF, and never a read
            done.wait(10)

    class Filling(asyncio.Protocol):
        def __init__(self):
            self.lost = loop.create_future()
            self.paused = False

        def pause_writing(self):
            self.paused = True

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        transport, protocol = await loop.create_connection(
            Filling,
            *listener.getsockname(),
            ssl=client_ctx,
            server_hostname="localhost",
            ssl_shutdown_timeout=0.1,
        )
        try:
            chunk = bytes(1 << 20)
            for _ in range(64):
                if protocol.paused:
                    break
                transport.write(chunk)
                await asyncio.sleep(0)
            assert protocol.paused
            if close_first:
                transport.close()
            filled.set()
            return await asyncio.wait_for(protocol.lost, 10)
        finally:
            filled.set()
            done.set()
            transport.abort()

    thread = threading.Thread(target=server)
    thread.start()
    try:
        exc = loop.run_until_complete(main())
    finally:
        thread.join()
        listener.close()
    assert isinstance(exc, TimeoutError) and str(exc) == "SSL shutdown timed out"
