"""Two builds of ferroloop on one workload, round by round: how far a change moved a row.

    python benchmarks/ab.py --base PYTHON --new PYTHON --workload NAME [--placement P]
                            [--rounds N] [--size N]

PYTHON is the interpreter of a virtualenv with that build installed; for the build before a change,
copy .venv-bench (`cp -a .venv-bench /tmp/venv-base`) before `make bench-install`. Each round runs
both builds once, each in a fresh process (run.py's `run_once`), the base first in even rounds and
the new build first in odd ones, so that neither always follows the other. Printed: every run, the
medians, and the median of the rounds' ratios (new over base) with the rounds the new build won.
The interpreters are given by absolute path, as run.py starts its own: started by a relative path,
stdlib asyncio's 1 KiB echo ran 3x slower (design.md, the paragraph on glibc's mmap threshold).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from run import fmt_value, paired, run_once, value_of
from workloads import ALL
from workloads.placement import PLACEMENTS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="interpreter with the build before")
    parser.add_argument("--new", required=True, help="interpreter with the build after")
    parser.add_argument("--workload", required=True, choices=sorted(ALL))
    parser.add_argument("--placement", choices=sorted(PLACEMENTS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--size", type=int, help="the workload's size (default: run.py's)")
    args = parser.parse_args(argv)
    workload = ALL[args.workload]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if workload.placed and args.placement is None:
        parser.error(f"{args.workload!r} needs --placement")
    size = args.size or workload.size
    builds = {"base": os.path.abspath(args.base), "new": os.path.abspath(args.new)}
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    for round_ in range(args.rounds):
        order = ["base", "new"] if round_ % 2 == 0 else ["new", "base"]
        for build in order:
            run = run_once("ferroloop", args.workload, size, 300, args.placement, builds[build])
            if "error" in run:
                sys.exit(f"{build} build failed: {run['error']}")
            runs[build].append(run)
    for build, build_runs in runs.items():
        values = [value_of(r, workload.metric) for r in build_runs]
        listed = ", ".join(fmt_value(v, workload.metric) for v in values)
        print(f"{build}: median {fmt_value(statistics.median(values), workload.metric)} ({listed})")
    ratio, ahead, count = paired(runs, "new", "base", workload.metric)
    print(f"new/base, round by round: median {ratio:.3f}, new ahead in {ahead} of {count}")


if __name__ == "__main__":
    main()
