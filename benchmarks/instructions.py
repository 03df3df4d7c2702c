"""Instructions per operation of the CPU-bound core workloads, counted by callgrind.

The same workloads as run.py, on every loop, each at two sizes: the difference of the two counts,
divided by the extra operations, is the marginal cost of one operation, with start-up and imports
cancelled out. On a shared 2-core VM, run.py's wall-clock runs of one loop on one row spread over
20-60%, so a row where two loops are within about 15% of each other is not settled by them. The
counts do not depend on what else the machine does; with string hashing fixed (PYTHONHASHSEED=0:
random seeds moved single rows by 1-3% between runs, through dict layouts) they repeat exactly,
but for the threaded row, whose interleaving varies. They count user-space instructions only: no
kernel work (so no network row), no cache misses, no waiting for the GIL. They complement run.py;
they do not replace it.

    python benchmarks/instructions.py [--only SUBSTRING] [--loops a,b] [--docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ALL_LOOPS, ROOT, machine, versions  # noqa: E402
from workloads import core  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")


def size_for(workload) -> int:
    """The smaller of the two sizes: a fifth of the quick size, enough for steady state."""
    return max(5_000, workload.quick_size // 5)


def count(loop: str, name: str, size: int) -> int:
    """Instructions callgrind counts in one fresh worker process."""
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
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return int(COLLECTED.search(proc.stderr).group(1))


def per_op(small: int, large: int, size: int) -> float:
    """The marginal instructions of one operation, from runs of `size` and `2 * size`."""
    return (large - small) / size


def markdown(results: dict, loops: list[str], header: dict) -> str:
    lines = [
        "# ferroloop: instructions per operation",
        "",
        f"Counted {header['date']} by callgrind on {header['machine']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".",
        "Each cell: (instructions at 2n - instructions at n) / n, n as given, PYTHONHASHSEED=0;",
        "fewer is better.",
        "Ratios >1 mean ferroloop runs fewer instructions per operation. User space only: see",
        "benchmarks/instructions.py for what this does and does not count.",
        "",
        "| workload | n | " + " | ".join(loops) + " | vs asyncio | vs uvloop | vs rloop |",
        "|---" * (len(loops) + 5) + "|",
    ]
    for name, entry in results.items():
        cells = [f"{entry['per_op'][lp]:,.0f}" for lp in loops]
        ferro = entry["per_op"].get("ferroloop")
        ratios = [
            f"{entry['per_op'][base] / ferro:.2f}x" if ferro and base in entry["per_op"] else "–"
            for base in ("asyncio", "uvloop", "rloop")
        ]
        lines.append(f"| {name} | {entry['size']:,} | " + " | ".join(cells + ratios) + " |")
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
    chosen = {
        n: w
        for n, w in core.WORKLOADS.items()
        if w.metric == "time" and (not args.only or args.only in n)
    }
    jobs = [
        (name, loop, size)
        for name, w in chosen.items()
        for loop in loops
        for size in (size_for(w), 2 * size_for(w))
    ]
    # Counts do not depend on what else runs: use both cores.
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(job[1], job[0], job[2]), jobs)))
    results = {}
    for name, w in chosen.items():
        n = size_for(w)
        results[name] = {
            "size": n,
            "per_op": {lp: per_op(counts[name, lp, n], counts[name, lp, 2 * n], n) for lp in loops},
        }
        print(name, {lp: round(v) for lp, v in results[name]["per_op"].items()}, flush=True)
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
