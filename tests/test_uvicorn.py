"""uvicorn serves on ferroloop through its documented door, `--loop ferroloop:new_event_loop`:
plain HTTP and a websocket upgrade (uvicorn swaps the protocol under the transport), with the same
test on uvicorn's own asyncio loop."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")

APPS = Path(__file__).resolve().parent / "apps"


@pytest.mark.parametrize(
    ("loop_option", "loop_module"),
    [("asyncio", "asyncio."), ("ferroloop:new_event_loop", "ferroloop.")],
)
def test_uvicorn_http_and_websocket(loop_option, loop_module):
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--loop", loop_option, "--port", str(port)]
        + ["--app-dir", str(APPS), "asgi_echo:app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as server:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                        body = response.read().decode()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            with websockets_sync.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                ws.send("hello")
                echoed = ws.recv(timeout=10)
        finally:
            server.terminate()
            server.wait(timeout=10)
    assert body.startswith(f"loop={loop_module}")
    assert echoed == "HELLO"
