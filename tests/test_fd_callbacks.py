"""add_reader/add_writer: level-triggered fd callbacks, with selectors' validation errors."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from conftest import run_turns


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reader_is_level_triggered(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, "r")
    run_turns(loop, 2)
    assert calls == []
    b.send(b"x")
    run_turns(loop, 3)
    assert calls == ["r", "r", "r"], "unread data keeps the reader firing"
    a.recv(10)
    run_turns(loop, 2)
    assert calls == ["r", "r", "r"] or calls == ["r"] * 4
    n = len(calls)
    run_turns(loop, 2)
    assert len(calls) == n, "a drained socket stays quiet"
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_io_that_arrives_during_a_chain_of_callbacks_joins_the_next_turn(loop, sockpair):
    # Every turn polls, callbacks ready or not: a reader made ready in turn 1 runs in turn 2,
    # after the callback that was ready when turn 2 began, and not once the chain is over.
    a, b = sockpair
    log = []

    def reader():
        log.append("read")
        a.recv(10)
        loop.remove_reader(a)

    def tick(n):
        log.append(n)
        if n == 1:
            b.send(b"x")
        if n < 6:
            loop.call_soon(tick, n + 1)
        else:
            loop.stop()

    loop.add_reader(a, reader)
    loop.call_soon(tick, 1)
    loop.run_forever()
    assert log == [1, 2, "read", 3, 4, 5, 6]


def test_reader_that_drains_is_called_once_per_write(loop, sockpair):
    a, b = sockpair
    got = []
    loop.add_reader(a.fileno(), lambda: got.append(a.recv(100)))
    b.send(b"one")
    run_turns(loop, 3)
    b.send(b"two")
    run_turns(loop, 3)
    assert got == [b"one", b"two"]
    loop.remove_reader(a.fileno())


def test_writer_fires_while_writable(loop, sockpair):
    a, _ = sockpair
    calls = []
    loop.add_writer(a, calls.append, "w")
    run_turns(loop, 2)
    assert calls == ["w", "w"]
    assert loop.remove_writer(a) is True
    run_turns(loop)
    assert calls == ["w", "w"]


def test_reader_and_writer_on_one_fd(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, "r")
    loop.add_writer(a, calls.append, "w")
    b.send(b"x")
    run_turns(loop)
    assert sorted(calls) == ["r", "w"]
    assert loop.remove_writer(a)
    calls.clear()
    run_turns(loop)
    assert calls == ["r"]
    assert loop.remove_reader(a)


def test_replacing_a_reader_cancels_the_old_handle(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, "old")
    loop.add_reader(a, calls.append, "new")
    b.send(b"x")
    run_turns(loop)
    assert calls == ["new"]
    loop.remove_reader(a)


def test_bad_file_objects(loop):
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match="^Invalid file object: 'nope'$"):
        loop.add_reader("nope", print)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        loop.add_reader(r, print)
    assert info.value.errno == errno.EBADF


def test_regular_files_cannot_be_watched(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(PermissionError) as info:
            loop.add_reader(f, print)
        assert info.value.errno == errno.EPERM
        assert loop.remove_reader(f) is False


def test_closed_loop(loop, sockpair):
    a, _ = sockpair
    loop.add_reader(a, print)
    loop.close()
    assert loop.remove_reader(a) is False
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.add_reader(a, print)


def test_fd_closed_behind_the_loops_back(loop):
    a, b = socket.socketpair()
    calls = []
    loop.add_reader(a.fileno(), calls.append, 1)
    fd = a.fileno()
    a.close()
    b.close()
    run_turns(loop, 2)
    assert loop.remove_reader(fd) is True


def test_a_socket_closed_while_watched_is_found_by_identity(loop):
    # A closed socket's fileno() is -1; selectors then look the object up among the registered
    # ones, so it can still be unregistered (anyio closes a socket, then removes its reader).
    a, b = socket.socketpair()
    loop.add_reader(a, print)
    fd = a.fileno()
    a.close()
    key = loop._selector.get_key(a)
    assert (key.fileobj, key.fd, key.events) == (a, fd, 1)
    assert loop.remove_reader(a) is True
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.remove_reader(a)
    b.close()


def test_a_closed_socket_never_watched_is_invalid(loop):
    a, b = socket.socketpair()
    a.close()
    b.close()
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.remove_writer(a)
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.add_reader(a, print)


def test_changing_a_closed_fds_watch_fails_and_forgets_it(loop):
    a, b = socket.socketpair()
    loop.add_reader(a, print)
    loop.add_writer(a, print)
    a.close()
    with pytest.raises(OSError) as info:
        loop.remove_reader(a)
    assert info.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        loop.remove_writer(a)
    b.close()


def test_a_number_closed_and_opened_again_behind_the_loops_back(loop):
    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), print)
    c, d = socket.socketpair()
    # The watched socket is closed and another opened under its number, in one step.
    os.dup2(c.fileno(), a.fileno())
    c.close()
    with pytest.raises(FileNotFoundError):
        loop.add_writer(a.fileno(), print)
    assert loop.remove_reader(a.fileno()) is False, "the failed change forgot the fd"
    calls = []
    loop.add_writer(a.fileno(), calls.append, "w")
    run_turns(loop)
    assert calls == ["w"]
    assert loop.remove_writer(a.fileno()) is True
    for s in (a, b, d):
        s.close()
