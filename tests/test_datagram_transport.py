"""The datagram transport's contracts, on asyncio and ferroloop alike: addresses as the socket
module gives them (IPv4, IPv6, Unix paths, the abstract namespace), remote_addr checks, errors
through error_received, host names, misuse messages, closing, a socket of the caller's and the
arguments asyncio refuses."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from conftest import peer_recvfrom, peer_sendto


class Collector(asyncio.DatagramProtocol):
    def __init__(self, loop):
        self.datagrams = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def _peer(family, address):
    peer = socket.socket(family, socket.SOCK_DGRAM)
    peer.bind(address)
    peer.setblocking(False)
    return peer


def test_ipv4_datagrams_carry_the_sender_address(loop):
    async def main():
        peer = _peer(socket.AF_INET, ("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        here = transport.get_extra_info("sockname")
        await peer_sendto(loop, peer, b"ping", here)
        data, addr = await asyncio.wait_for(proto.datagrams.get(), 10)
        transport.sendto(b"pong", addr)
        reply, source = await peer_recvfrom(loop, peer, 100)
        from_peer = addr == peer.getsockname()
        transport.close()
        await proto.lost
        peer.close()
        return data, from_peer, type(addr), reply, source == here

    assert loop.run_until_complete(main()) == (b"ping", True, tuple, b"pong", True)


def test_replies_reach_each_sender_whatever_came_in_between(loop):
    # ferroloop remembers the last few senders' addresses in kernel form for replies to them; a
    # reply to an earlier sender, or to an equal tuple made anew, must go where the tuple says.
    async def main():
        peers = [_peer(socket.AF_INET, ("127.0.0.1", 0)) for _ in range(3)]
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        here = transport.get_extra_info("sockname")
        addrs = []
        for i, peer in enumerate(peers):
            await peer_sendto(loop, peer, b"from %d" % i, here)
            data, addr = await asyncio.wait_for(proto.datagrams.get(), 10)
            addrs.append(addr)
        transport.sendto(b"to 0", addrs[0])
        transport.sendto(b"to 2", addrs[2])
        transport.sendto(b"to 1", ("127.0.0.1", addrs[1][1]))
        replies = [(await peer_recvfrom(loop, peer, 100))[0] for peer in peers]
        own = [addr == peer.getsockname() for addr, peer in zip(addrs, peers)]
        transport.close()
        await proto.lost
        for peer in peers:
            peer.close()
        return replies, own

    assert loop.run_until_complete(main()) == ([b"to 0", b"to 1", b"to 2"], [True] * 3)


def test_more_senders_than_ferroloop_remembers_each_get_their_own_address(loop):
    # ferroloop keeps the address tuples of its last 8 senders and hands a returning sender the
    # tuple made for it before: with 20 senders taking turns, every datagram must still carry
    # its own sender's address, and a reply to it reach that sender alone.
    async def main():
        peers = [_peer(socket.AF_INET, ("127.0.0.1", 0)) for _ in range(20)]
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        here = transport.get_extra_info("sockname")
        wrong = []
        for round_ in range(3):
            for i in [*range(0, 20, 2), *range(1, 20, 2)]:
                await peer_sendto(loop, peers[i], b"%d.%d" % (round_, i), here)
                data, addr = await asyncio.wait_for(proto.datagrams.get(), 10)
                if data != b"%d.%d" % (round_, i) or addr != peers[i].getsockname():
                    wrong.append((round_, i, data, addr))
                transport.sendto(b"re " + data, addr)
                reply, source = await asyncio.wait_for(peer_recvfrom(loop, peers[i], 100), 10)
                if reply != b"re " + data or source != here:
                    wrong.append((round_, i, reply, source))
        transport.close()
        await proto.lost
        for peer in peers:
            peer.close()
        return wrong

    assert loop.run_until_complete(main()) == []


def test_ipv6_addresses_are_four_tuples(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        peer = _peer(socket.AF_INET6, ("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")

    async def main():
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("::1", 0)
        )
        await peer_sendto(loop, peer, b"six", transport.get_extra_info("sockname"))
        data, addr = await asyncio.wait_for(proto.datagrams.get(), 10)
        transport.sendto(b"back", addr)
        reply, _ = await peer_recvfrom(loop, peer, 100)
        from_peer = addr == peer.getsockname()
        transport.close()
        peer.close()
        return data, from_peer, reply

    assert loop.run_until_complete(main()) == (b"six", True, b"back")


def test_unix_datagrams_carry_paths_and_abstract_names(loop, tmp_path):
    async def main():
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=str(tmp_path / "server"), family=socket.AF_UNIX
        )
        named = _peer(socket.AF_UNIX, str(tmp_path / "client"))
        abstract = _peer(socket.AF_UNIX, b"\0ferroloop-test-%d" % id(transport))
        for peer in (named, abstract):
            await peer_sendto(loop, peer, b"hi", str(tmp_path / "server"))
        first = await asyncio.wait_for(proto.datagrams.get(), 10)
        second = await asyncio.wait_for(proto.datagrams.get(), 10)
        transport.sendto(b"to-abstract", second[1])
        reply, _ = await peer_recvfrom(loop, abstract, 100)
        from_abstract = second[1] == abstract.getsockname()
        transport.close()
        named.close()
        abstract.close()
        return first[1], from_abstract, type(second[1]), reply

    assert loop.run_until_complete(main()) == (
        str(tmp_path / "client"),
        True,
        bytes,
        b"to-abstract",
    )


def test_remote_addr_is_enforced_and_empty_data_follows_the_python_version(loop):
    async def main():
        peer = _peer(socket.AF_INET, ("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), remote_addr=peer.getsockname()
        )
        with pytest.raises(ValueError) as info:
            transport.sendto(b"x", ("127.0.0.1", 9))
        transport.sendto(b"")
        transport.sendto(b"after-empty", peer.getsockname())
        received = [(await peer_recvfrom(loop, peer, 100))[0]]
        if received[0] == b"":
            received.append((await peer_recvfrom(loop, peer, 100))[0])
        transport.close()
        peer.close()
        return str(info.value), received

    message, received = loop.run_until_complete(main())
    assert message.startswith("Invalid address: must be None or ('127.0.0.1', ")
    # Python 3.13 started sending empty datagrams; before, sendto(b'') did nothing.
    expected = [b"", b"after-empty"] if sys.version_info >= (3, 13) else [b"after-empty"]
    assert received == expected


def test_errors_go_to_error_received(loop):
    # A connected UDP socket learns of the closed port from the ICMP reply: ECONNREFUSED.
    async def main():
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), remote_addr=("127.0.0.1", port)
        )
        transport.sendto(b"anyone?")
        exc = await asyncio.wait_for(proto.errors.get(), 10)
        still_open = not transport.is_closing()
        transport.close()
        return type(exc), still_open

    assert loop.run_until_complete(main()) == (ConnectionRefusedError, True)


@pytest.mark.skipif(
    sys.version_info >= (3, 11), reason="asyncio's datagram transport pauses from Python 3.11"
)
def test_reading_cannot_be_paused_before_python_3_11(loop):
    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        refused = []
        for method in (transport.is_reading, transport.pause_reading, transport.resume_reading):
            try:
                method()
            except NotImplementedError:
                refused.append(method.__name__)
        transport.close()
        return refused

    assert loop.run_until_complete(main()) == ["is_reading", "pause_reading", "resume_reading"]


def test_host_names_are_resolved_by_the_socket(loop):
    async def main():
        peer = _peer(socket.AF_INET, ("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        transport.sendto(b"by-name", ("localhost", peer.getsockname()[1]))
        data, _ = await peer_recvfrom(loop, peer, 100)
        transport.close()
        peer.close()
        return data

    assert loop.run_until_complete(main()) == b"by-name"


def test_sendto_misuse_and_what_the_transport_is(loop):
    async def main():
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        with pytest.raises(TypeError) as info:
            transport.sendto("text", ("127.0.0.1", 9))
        kinds = (isinstance(transport, asyncio.BaseTransport), transport.get_write_buffer_size())
        transport.close()
        synchronous = proto.lost.done()
        exc = await proto.lost
        return str(info.value), kinds, synchronous, exc, transport.is_closing()

    assert loop.run_until_complete(main()) == (
        "data argument must be a bytes-like object, not 'str'",
        (True, 0),
        False,
        None,
        True,
    )


class _Bytes(bytes):
    pass


def test_sendto_sends_every_kind_of_bytes_like_object(loop):
    # ferroloop reads an exact bytes object in place and everything else through the buffer
    # protocol: each kind must arrive as one datagram with its exact contents.
    async def main():
        peer = _peer(socket.AF_INET, ("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        there = peer.getsockname()
        for data in [b"ab", _Bytes(b"cd"), bytearray(b"ef"), memoryview(b"xxgh")[2:]]:
            transport.sendto(data, there)
        received = [(await peer_recvfrom(loop, peer, 100))[0] for _ in range(4)]
        transport.close()
        await proto.lost
        peer.close()
        return received

    assert loop.run_until_complete(main()) == [b"ab", b"cd", b"ef", b"gh"]


def test_sendto_takes_its_arguments_as_a_python_method_does(loop):
    async def main():
        peer = _peer(socket.AF_INET, ("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collector(loop), local_addr=("127.0.0.1", 0)
        )
        there = peer.getsockname()
        transport.sendto(b"1", addr=there)
        transport.sendto(data=b"2", addr=there)
        transport.sendto(b"3", there)
        received = [(await peer_recvfrom(loop, peer, 100))[0] for _ in range(3)]
        errors = []
        for args, kwargs in [
            ((), {}),
            ((b"x", there, None), {}),
            ((b"x",), {"address": there}),
            ((b"x", there), {"addr": there}),
            ((), {"addr": there}),
        ]:
            with pytest.raises(TypeError) as info:
                transport.sendto(*args, **kwargs)
            # The class name differs (asyncio's is _SelectorDatagramTransport; Python 3.9 names
            # none): what follows is CPython's message for a method `sendto(self, data, addr=None)`.
            errors.append(str(info.value).partition("sendto() ")[2])
        transport.close()
        await proto.lost
        peer.close()
        return received, errors

    assert loop.run_until_complete(main()) == (
        [b"1", b"2", b"3"],
        [
            "missing 1 required positional argument: 'data'",
            "takes from 2 to 3 positional arguments but 4 were given",
            "got an unexpected keyword argument 'address'",
            "got multiple values for argument 'addr'",
            "missing 1 required positional argument: 'data'",
        ],
    )


def test_ferroloop_datagram_transport_is_a_datagram_transport():
    # CPython 3.11's own is a plain Transport; ferroloop's is both, as the asyncio docs describe.
    import ferroloop

    loop = ferroloop.new_event_loop()

    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        kinds = (
            isinstance(transport, asyncio.DatagramTransport),
            isinstance(transport, asyncio.Transport),
        )
        transport.close()
        return kinds

    try:
        assert loop.run_until_complete(main()) == (True, True)
    finally:
        loop.close()


# 3.13 reworded it.
WRONG_SOCKET_TYPE = (
    "A datagram socket was expected" if sys.version_info >= (3, 13) else "A UDP Socket was expected"
)


def test_a_given_socket_and_the_arguments_asyncio_checks(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        given = (
            transport.get_extra_info("socket").fileno() == sock.fileno(),
            transport.get_extra_info("sockname") == sock.getsockname(),
        )
        transport.close()

        forwarded, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol,
            family=socket.AF_INET,
            proto=socket.IPPROTO_UDP,
            local_addr=("127.0.0.1", 0),
        )
        family = forwarded.get_extra_info("socket").family
        forwarded.close()

        refused = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            for arguments in (
                {"sock": udp, "local_addr": ("127.0.0.1", 0)},
                {"sock": tcp},
                {"local_addr": ("127.0.0.1", 0), "remote_addr": ("::1", 9)},
                {},
            ):
                with pytest.raises(ValueError) as error:
                    await loop.create_datagram_endpoint(asyncio.DatagramProtocol, **arguments)
                refused.append(str(error.value).split(" (")[0].split(", got")[0])
        await asyncio.sleep(0)
        return given, family, refused

    given, family, refused = loop.run_until_complete(main())
    assert given == (True, True)
    assert family == socket.AF_INET
    assert refused == [
        "socket modifier keyword arguments can not be used when sock is specified.",
        WRONG_SOCKET_TYPE,
        "can not get address information",
        "unexpected address family",
    ]
