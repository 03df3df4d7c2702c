"""Every benchmark workload runs once, at a tiny size, on ferroloop: it keeps the benchmarks from
rotting. Not a measurement: `make bench` measures, in fresh processes, against the other loops."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from workloads import ALL, MODULES  # noqa: E402
from workloads.clients import postgres_missing  # noqa: E402
from workloads.network import LOADGEN  # noqa: E402


@pytest.mark.parametrize("name", sorted(ALL))
def test_workload_runs_on_ferroloop(name):
    workload = ALL[name]
    if name.startswith(("TCP", "UDP", "TLS")) and not LOADGEN.exists():
        pytest.skip("the load client is not built (make loadgen)")
    if "wrk" in name and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (make test and make bench install it)")
    if "redis-server" in name and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test and make bench install it)")
    if "PostgreSQL" in name and postgres_missing():
        pytest.skip(postgres_missing())
    for module in MODULES.get(name, ()):
        pytest.importorskip(module, reason=f"{module} is not installed (requirements-dev.txt)")
    if name in ("TaskGroup x100k", "asyncio.timeout()") and sys.version_info < (3, 11):
        pytest.skip("asyncio.TaskGroup and asyncio.timeout are new in 3.11")
    if name == "UDP ping-pong 64 B, sock_* calls" and sys.version_info < (3, 11):
        pytest.skip("loop.sock_recvfrom and loop.sock_sendto are new in 3.11")
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "worker.py"),
            "--loop",
            "ferroloop",
            "--workload",
            name,
            "--size",
            str(workload.smoke_size),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loop_type"] == "ferroloop._loop.EventLoop"
    assert result["ops"] > 0


def test_two_builds_are_compared_round_by_round():
    """benchmarks/ab.py, one build given as base and new: every run listed, the pairing made."""
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "ab.py"),
            "--base",
            sys.executable,
            "--new",
            sys.executable,
            "--workload",
            "call_soon chain",
            "--rounds",
            "3",
            "--size",
            str(ALL["call_soon chain"].smoke_size),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    base, new, pairs = out.stdout.strip().splitlines()
    assert base.startswith("base: median ") and base.count("/s") == 4
    assert new.startswith("new: median ") and new.count("/s") == 4
    assert pairs.startswith("new/base, round by round: median ")
    assert pairs.endswith(" of 3")


def test_a_placement_pins_the_server_and_its_load_client():
    import os

    if not LOADGEN.exists():
        pytest.skip("the load client is not built (make loadgen)")
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the two-core placement needs CPUs 0 and 1")
    script = (
        "import os, sys; sys.argv[1:] = ['--loop', 'ferroloop', '--workload',"
        " 'UDP ping-pong 64 B', '--size', '200', '--placement', 'two cores'];"
        " import worker, workloads.placement as pl; worker.main();"
        " print(sorted(os.sched_getaffinity(0)), pl.client_argv(['true']))"
    )
    out = (
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=BENCHMARKS,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert json.loads(out[0])["ops"] > 0
    assert out[1] == "[0] ['taskset', '-c', '1', 'true']"


def test_instruction_counts_run_and_subtract_start_up():
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (make bench-instructions installs it)")
    import instructions

    small = instructions.count("ferroloop", "call_soon chain", 2_000)
    large = instructions.count("ferroloop", "call_soon chain", 4_000)
    assert (small[1], large[1]) == (2_000, 4_000)
    # Start-up (the interpreter, imports) is millions of instructions; one callback is thousands.
    assert small[0] > 10_000_000
    assert 500 < instructions.per_op(small, large) < 50_000


def test_instruction_counts_of_a_network_row_are_per_operation_of_its_client():
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (make bench-instructions installs it)")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the server and its client each need a core of their own")
    import instructions

    row = "TCP echo 1 KiB, Protocol"
    small = instructions.count("ferroloop", row, 300, instructions.NETWORK_PLACEMENT)
    large = instructions.count("ferroloop", row, 1200, instructions.NETWORK_PLACEMENT)
    # The load runs for a time, not a number of round trips: more time, more round trips. Four
    # times the time, as twice was not enough on a busy VM (7,180 round trips in 300 ms under
    # callgrind, then 5,017 in 600).
    assert 0 < small[1] < large[1]
    assert 500 < instructions.per_op(small, large) < 100_000


def test_instruction_counts_report_a_loop_that_could_not_run_a_row_as_na():
    import instructions

    # A loop the row marks unsupported is not run at all (rloop hangs on the bulk echo).
    assert instructions.network_count("rloop", "TCP bulk 64 MiB, streams", 4) is None

    failed = instructions.per_op(None, (2, 20))
    assert failed is None
    per_op = {"asyncio": 40.0, "uvloop": 20.0, "rloop": failed, "ferroloop": 10.0}
    results = {"asyncpg fetchrow (PostgreSQL)": {"size": 2000, "network": True, "per_op": per_op}}
    md = instructions.markdown(results, list(per_op), {"date": "d", "machine": "m", "versions": {}})
    row = next(line for line in md.splitlines() if line.startswith("| asyncpg"))
    assert (
        row
        == "| asyncpg fetchrow (PostgreSQL) | 2,000 ms | 40 | 20 | n/a | 10 | 4.00x | 2.00x | – |"
    )
    assert "The core rows" not in md


def saved_run(ops: float, cpu_seconds: float = 0.5, user_seconds: float | None = None) -> dict:
    """One run of one loop as run.py saves it (runs saved before 2026-12-07 lack `user_seconds`)."""
    run = {"ops": ops, "seconds": 1.0, "cpu_seconds": cpu_seconds, "peak_rss_mib": 20.0}
    if user_seconds is not None:
        run["user_seconds"] = user_seconds
    return run


def render(tmp_path: Path, loops: list[str], reps: int, rows: dict[str, dict]) -> str:
    """The report run.py gives again for a saved run of `rows` ({row: {loop: [run, ...]}})."""
    saved = {
        "header": {
            "date": "2026-12-05",
            "machine": "test machine",
            "versions": {"python": "3"},
            "mode": "full",
            "reps": reps,
            "loops": loops,
        },
        "results": {
            name: {"metric": "time", "size": 1, "runs": runs} for name, runs in rows.items()
        },
    }
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--render", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_a_saved_run_is_reported_again_with_server_cpu_per_operation(tmp_path):
    # Two loops, one placed row and one core row, as run.py saves them: the report gives the
    # throughput table for both and the CPU-per-operation table for the placed row only, with
    # its user-space part where the runs have one.
    out = render(
        tmp_path,
        ["asyncio", "ferroloop"],
        2,
        {
            "UDP ping-pong 64 B [one core]": {
                "asyncio": [saved_run(1000, 0.02), saved_run(1000, 0.04)],
                "ferroloop": [saved_run(4000, 0.01, 0.002), saved_run(4000, 0.01, 0.004)],
            },
            "call_soon chain": {
                "asyncio": [saved_run(10, 1.0)] * 2,
                "ferroloop": [saved_run(40, 1.0)] * 2,
            },
        },
    )
    assert "| UDP ping-pong 64 B [one core] | 1,000/s (1,000/s–1,000/s) | 4,000/s" in out
    assert "| call_soon chain | 10/s (10/s–10/s) | 40/s (40/s–40/s) | 4.00x |" in out
    cpu_table = out.split("CPU time of the measured process")[1].split("Geometric mean")[0]
    assert "| UDP ping-pong 64 B [one core] | 30.00 | 2.50 (0.75 user) |" in cpu_table
    assert "call_soon chain" not in cpu_table


def test_rows_close_to_a_peer_are_also_compared_round_by_round(tmp_path):
    # Round i holds repetition i of every loop. A failed run leaves its round out of the pairs;
    # a row far from every peer is not listed.
    out = render(
        tmp_path,
        ["uvloop", "ferroloop"],
        4,
        {
            "close row": {
                "uvloop": [
                    saved_run(1000),
                    saved_run(1100),
                    saved_run(900),
                    {"error": "timed out"},
                ],
                "ferroloop": [saved_run(990), saved_run(1122), saved_run(882), saved_run(1000)],
            },
            "far row": {"uvloop": [saved_run(10)] * 4, "ferroloop": [saved_run(40)] * 4},
        },
    )
    close_table = out.split("round by round")[1].split("Geometric mean")[0]
    assert "| close row | uvloop | 0.990x | 1 of 3 |" in close_table
    assert "far row" not in close_table


def test_rows_whose_rounds_read_the_other_way_are_also_compared_round_by_round(tmp_path):
    # The machine ran slow in two rounds for uvloop and three for ferroloop: the medians put
    # ferroloop 0.72x behind, while in four rounds of five it was ahead.
    out = render(
        tmp_path,
        ["uvloop", "ferroloop"],
        5,
        {
            "jumpy row": {
                "uvloop": [saved_run(n) for n in (1000, 1000, 1400, 1400, 1400)],
                "ferroloop": [saved_run(n) for n in (1010, 1010, 1010, 1420, 1420)],
            },
        },
    )
    main_row = next(line for line in out.splitlines() if line.startswith("| jumpy row |"))
    assert main_row.endswith("| 0.72x | – |")
    close_table = out.split("round by round")[1].split("Geometric mean")[0]
    assert "| jumpy row | uvloop | 1.010x | 4 of 5 |" in close_table
