"""The demo prints the same story, line for line, on stdlib asyncio and on ferroloop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "demo" / "create_task_demo.py"


def story(loop_name: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(DEMO), loop_name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    # The first line names the loop and the last one the time taken: the story is in between.
    assert out[-1].startswith(f"({loop_name}: ")
    return out


def test_demo_tells_the_same_story_on_both_loops():
    on_asyncio = story("asyncio")
    on_ferroloop = story("ferroloop")
    assert on_asyncio[0] == "loop: asyncio.unix_events._UnixSelectorEventLoop"
    assert on_ferroloop[0] == "loop: ferroloop._loop.EventLoop"
    assert on_ferroloop[1:-1] == on_asyncio[1:-1]
    story_lines = on_ferroloop[1:-1]
    # Tasks start before gather; coroutines only once gathered.
    assert story_lines.index("  task 0: started") < story_lines.index("create_task: now gathering")
    assert story_lines.index("coroutines: now gathering") < story_lines.index("  coro 0: started")
