"""ferroloop's public face type-checks as asyncio's: a program typed against asyncio's API checks
unchanged under `mypy --strict` when handed ferroloop's loop, and runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).resolve().parent / "typing" / "asyncio_api.py"


def test_a_program_typed_against_asyncio_checks_with_ferroloop():
    pytest.importorskip("mypy", reason="mypy is not installed (requirements-dev.txt, Python 3.10+)")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(PROGRAM)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_typed_program_runs():
    sys.path.insert(0, str(PROGRAM.parent))
    try:
        import asyncio_api
    finally:
        sys.path.remove(str(PROGRAM.parent))
    expected = [42, 42, 46] + ([42] if sys.version_info >= (3, 12) else [])
    assert asyncio_api.every_door() == expected
