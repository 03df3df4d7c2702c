"""Instructions per operation of the core workloads and of the loop's process on some network
rows, counted by callgrind.

The same workloads as run.py, on every loop, each at two sizes: the difference of the two counts,
divided by the difference of the operations done, is the marginal cost of one operation, with
start-up and imports cancelled out. On a shared 2-core VM, run.py's wall-clock runs of one loop on
one row spread over 20-60%, so a row where two loops are within about 15% of each other is not
settled by them. The counts do not depend on what else the machine does; with string hashing
fixed (PYTHONHASHSEED=0: random seeds moved single rows by 1-3% between runs, through dict
layouts) they repeat exactly, but for the threaded row, whose interleaving varies. They count
user-space instructions only: no kernel work, no cache misses, no waiting for the GIL. They
complement run.py; they do not replace it.

On a network row the process that runs the loop (the server, or the database client) runs under
callgrind, pinned to one core, and its other side (the load client, or the database server), not
counted, on the other, for two load durations; the operations are those the row counts. Slowed
some fifty times by callgrind, the loop finds everything its peer keeps in flight (4 messages, or
16 requests, queries or commands) waiting at each poll: these are the costs of a loop under full
load, and they leave out the system calls' work.

    python benchmarks/instructions.py [--only SUBSTRING] [--loops a,b] [--docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ALL_LOOPS, ROOT, failure, machine, versions, worker_env  # noqa: E402
from workloads import ALL, core  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")


# The network rows counted, each under loads of NETWORK_LOAD_MS and twice that, with the loop's
# process pinned to one core and its peer to the other (the placement "two cores"). Not the
# sock_* echo: there a loop's count per message moved by half between runs of one build (how
# often a call's first try finds the data there decides how many waits it makes).
NETWORK_ROWS = (
    "TCP echo 1 KiB, Protocol",
    "TCP echo 1 KiB, streams",
    "TCP connect+echo+close 64 B, Protocol",
    "UDP ping-pong 64 B",
    "HTTP/1.1 keep-alive hello (wrk)",
    "TLS echo 1 KiB, Protocol",
    "HTTPS/1.1 keep-alive hello (wrk)",
    "aiohttp hello (wrk)",
    "uvicorn+httptools hello (wrk)",
    "websockets echo 1 KiB",
    "redis-py SET+GET (redis-server)",
    "asyncpg fetchrow (PostgreSQL)",
)
NETWORK_LOAD_MS = 2000
NETWORK_PLACEMENT = "two cores"


def size_for(workload) -> int:
    """The smaller of the two sizes: a fifth of the quick size, enough for steady state."""
    return max(5_000, workload.quick_size // 5)


def count(loop: str, name: str, size: int, placement: str | None = None) -> tuple[int, int]:
    """Instructions callgrind counts in one fresh worker process, and the operations it did."""
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(HERE / "worker.py"),
            "--loop",
            loop,
            "--workload",
            name,
            "--size",
            str(size),
            *(["--placement", placement] if placement else []),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=worker_env(PYTHONHASHSEED="0"),
    )
    ops = json.loads(proc.stdout.strip().splitlines()[-1])["ops"]
    return int(COLLECTED.search(proc.stderr).group(1)), ops


def network_count(loop: str, name: str, size: int) -> tuple[int, int] | None:
    """`count` for a network row in NETWORK_PLACEMENT, or None, with the reason printed, if the
    loop lacks what the row needs (not run, as run.py does not: it may hang) or the run failed
    (no PostgreSQL, no wrk here)."""
    reason = (ALL[name].unsupported or {}).get(loop)
    if reason is None:
        try:
            return count(loop, name, size, NETWORK_PLACEMENT)
        except subprocess.CalledProcessError as err:
            reason = failure(err.stderr, err.returncode)
    print(f"{name} on {loop}: {reason}", flush=True)
    return None


def per_op(small: tuple[int, int] | None, large: tuple[int, int] | None) -> float | None:
    """The marginal instructions of one operation, from a smaller and a larger run's counts
    (None if either run failed)."""
    if small is None or large is None:
        return None
    return (large[0] - small[0]) / (large[1] - small[1])


def table(results: dict, loops: list[str], size_column: str, size_cell) -> list[str]:
    """A markdown table of the rows' counts per loop and ferroloop's ratios; a row's sizes are
    shown by `size_cell(entry)`, and a loop that could not run it reads n/a."""
    lines = [
        f"| workload | {size_column} | "
        + " | ".join(loops)
        + " | vs asyncio | vs uvloop | vs rloop |",
        "|---" * (len(loops) + 5) + "|",
    ]
    for name, entry in results.items():
        counted = {lp: v for lp, v in entry["per_op"].items() if v is not None}
        cells = [f"{counted[lp]:,.0f}" if lp in counted else "n/a" for lp in loops]
        ferro = counted.get("ferroloop")
        ratios = [
            f"{counted[base] / ferro:.2f}x" if ferro and base in counted else "–"
            for base in ("asyncio", "uvloop", "rloop")
        ]
        lines.append(f"| {name} | {size_cell(entry)} | " + " | ".join(cells + ratios) + " |")
    return lines


def markdown(results: dict, loops: list[str], header: dict) -> str:
    lines = [
        "# ferroloop: instructions per operation",
        "",
        f"Counted {header['date']} by callgrind on {header['machine']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".",
        "Each cell: (instructions of the larger run - instructions of the smaller) / (operations",
        "of the larger - operations of the smaller), PYTHONHASHSEED=0; fewer is better.",
        "Ratios >1 mean ferroloop runs fewer instructions per operation. User space only: see",
        "benchmarks/instructions.py for what this does and does not count.",
    ]
    core_rows = {n: e for n, e in results.items() if not e["network"]}
    network_rows = {n: e for n, e in results.items() if e["network"]}
    if core_rows:
        lines += ["", "The core rows, at n and 2n operations:", ""]
        lines += table(core_rows, loops, "n", lambda e: f"{e['size']:,}")
    if network_rows:
        lines += [
            "",
            f"The loop's process on network rows ([{NETWORK_PLACEMENT}]), under loads of d and 2d",
            "milliseconds; slowed by callgrind, it is always under full load:",
            "",
        ]
        lines += table(network_rows, loops, "d", lambda e: f"{e['size']:,} ms")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the workloads whose name contains this")
    parser.add_argument("--loops", default=",".join(ALL_LOOPS))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--docs", action="store_true", help="also write docs/instructions.md")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian's valgrind package)")
    loops = args.loops.split(",")
    chosen_core = {
        n: size_for(w)
        for n, w in core.WORKLOADS.items()
        if w.metric == "time" and (not args.only or args.only in n)
    }
    chosen_network = {n: NETWORK_LOAD_MS for n in NETWORK_ROWS if not args.only or args.only in n}
    core_jobs = [
        (name, loop, size)
        for name, n in chosen_core.items()
        for loop in loops
        for size in (n, 2 * n)
    ]
    # Counts do not depend on what else runs: use both cores.
    with ThreadPoolExecutor(2) as pool:
        counts = dict(
            zip(core_jobs, pool.map(lambda job: count(job[1], job[0], job[2]), core_jobs))
        )
    # A network row's peer needs the core its loop is not pinned to: one at a time.
    for name, d in chosen_network.items():
        for loop in loops:
            for size in (d, 2 * d):
                counts[name, loop, size] = network_count(loop, name, size)
    results = {}
    for name, n in {**chosen_core, **chosen_network}.items():
        per_loop = {lp: per_op(counts[name, lp, n], counts[name, lp, 2 * n]) for lp in loops}
        results[name] = {"size": n, "network": name in chosen_network, "per_op": per_loop}
        print(name, {lp: v and round(v) for lp, v in per_loop.items()}, flush=True)
    header = {"date": dt.date.today().isoformat(), "machine": machine(), "versions": versions()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"instructions-{stamp}.json").write_text(
        json.dumps({"header": header, "results": results}, indent=1)
    )
    md = markdown(results, loops, header)
    print()
    print(md)
    if args.docs:
        (ROOT / "docs" / "instructions.md").write_text(md)


if __name__ == "__main__":
    main()
