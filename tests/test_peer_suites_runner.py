"""The peer-suites runner's plumbing, which otherwise runs only in the 30-minute `make peer-suites`:
the server a suite needs, the port it takes, running as someone other than root, and reading
unittest's failures."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from conformance import peer_suites


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True


def test_a_suites_server_listens_for_the_block_and_is_stopped_after(tmp_path):
    port = peer_suites.free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
    with peer_suites.serving(server, port, tmp_path / "server.log"):
        assert listening(port)
    assert not listening(port)


def test_a_server_that_never_listens_stops_the_run(tmp_path):
    port = peer_suites.free_port()
    with pytest.raises(SystemExit, match="did not start listening"):
        with peer_suites.serving([sys.executable, "-c", "pass"], port, tmp_path / "log"):
            pass


def test_a_taken_port_stops_the_run_before_its_server_starts():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} is taken"):
            peer_suites.free_port(port)


def test_only_root_runs_in_a_user_namespace(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert peer_suites.not_as_root(["initdb"]) == ["initdb"]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    argv = peer_suites.not_as_root(["initdb"])
    assert argv[:2] == ["unshare", "--user"] and argv[-1] == "initdb"
    assert argv[2].startswith("--map-user=") and argv[3].startswith("--map-group=")


def test_unittest_failures_are_read_by_their_headings():
    output = (
        "FAIL: test_tls (tests.test_connect.TestSSL.test_tls)\n"
        "ERROR: setUpClass (tests.test_pool.TestPool)\n"
        "FAILED tests/test_asyncio/test_pubsub.py::test_x[single] - boom\n"
    )
    assert peer_suites.failures(output) == {
        "test_tls (tests.test_connect.TestSSL.test_tls)",
        "setUpClass (tests.test_pool.TestPool)",
        "tests/test_asyncio/test_pubsub.py::test_x[single]",
    }
