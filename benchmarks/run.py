"""ferroloop's benchmark harness: every workload on asyncio, uvloop, rloop and ferroloop.

Method: each (workload, loop, repetition) runs in a fresh process; repetitions are interleaved
across loops with the order rotated each round, so that background load falls on all loops alike.
Reported: the median with min and max, ratios against asyncio, uvloop and rloop (and, where
ferroloop is within 3% of a peer or its rounds read the other way, the runs compared round by
round), CPU time and peak RSS.
A workload whose load comes from a client process of its own is measured once per placement of
the server and the client on the machine's cores, pinned (workloads/placement.py), in rows named
by the placement: unpinned, such a row has two speeds 2-3x apart and reports the scheduler's pick.

    python benchmarks/run.py [--quick] [--reps N] [--only SUBSTRING]... [--loops a,b] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from workloads import ALL  # noqa: E402
from workloads.placement import PLACEMENTS, row_name  # noqa: E402

ALL_LOOPS = ["asyncio", "uvloop", "rloop", "ferroloop"]
# Rows whose ratio of medians to a peer is nearer 1 than this are also reported round by round.
CLOSE = 0.03


def worth_pairing(medians: float, pairs: float) -> bool:
    """Whether a row is also reported round by round: its ratio of medians is near 1, or the
    median of its paired ratios says the other loop is ahead. The second happens on machines
    whose speed jumps between states for minutes at a time, hitting every loop of a round alike
    (a two-core HTTP row on a VM: 142,000 or 110,000 requests a second, whichever loop ran): how
    many of a loop's runs fell in the slow state moves its median, not its pairs."""
    return abs(medians - 1) < CLOSE or (medians < 1) != (pairs < 1)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("ferroloop", "uvloop", "rloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores"


def placed_rows(name: str, workload) -> list[tuple[str, str | None]]:
    """The rows a workload is measured in: one per placement if it has a client process."""
    if not workload.placed:
        return [(name, None)]
    return [(row_name(name, p), p) for p in PLACEMENTS]


# What a program runs in by default is what is measured: Python's development mode (its debug
# allocator hooks, asyncio's debug mode) and asyncio's debug mode cost a loop several times over.
DEBUG_SETTINGS = ("PYTHONDEVMODE", "PYTHONASYNCIODEBUG")


def worker_env(**extra: str) -> dict[str, str]:
    """The environment a measured worker runs in: this one, without the debug settings."""
    env = {k: v for k, v in os.environ.items() if k not in DEBUG_SETTINGS}
    env.update(extra)
    return env


def run_once(
    loop: str,
    workload: str,
    size: int,
    timeout: float,
    placement: str | None,
    python: str = sys.executable,
) -> dict:
    proc = subprocess.run(
        [
            python,
            str(HERE / "worker.py"),
            "--loop",
            loop,
            "--workload",
            workload,
            "--size",
            str(size),
            *(["--placement", placement] if placement else []),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=worker_env(),
    )
    if proc.returncode != 0:
        return {"error": failure(proc.stderr, proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def failure(stderr: str, returncode: int) -> str:
    """Why a worker failed: the last line of its stderr that says something (Rust panics end with
    a "note:" about backtraces, and valgrind's own lines start with "==")."""
    said = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("note:", "=="))]
    return (said or [f"exit {returncode}"])[-1][:200]


def value_of(run: dict, metric: str) -> float:
    if metric == "memory":
        return run["extra_mib"]
    return run["ops"] / run["seconds"]


def summarize(runs: dict[str, list[dict]], metric: str) -> dict[str, dict]:
    summary = {}
    for loop, loop_runs in runs.items():
        ok = [r for r in loop_runs if "error" not in r]
        if not ok:
            summary[loop] = {
                "error": loop_runs[0].get("error", "no run") if loop_runs else "no run"
            }
            continue
        values = [value_of(r, metric) for r in ok]
        summary[loop] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in ok),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
            "runs": len(ok),
        }
        if metric == "time":
            summary[loop]["cpu_us_per_op"] = statistics.median(
                1e6 * r["cpu_seconds"] / r["ops"] for r in ok
            )
            if all("user_seconds" in r for r in ok):  # not in runs saved before 2026-12-07
                summary[loop]["user_us_per_op"] = statistics.median(
                    1e6 * r["user_seconds"] / r["ops"] for r in ok
                )
    return summary


def speedup(a: float, b: float, metric: str) -> float:
    """>1 means `a` is better than `b`, for throughput and for memory alike."""
    return a / b if metric == "time" else b / a


def ratio(summary: dict, loop: str, base: str, metric: str) -> float | None:
    a, b = summary.get(loop, {}), summary.get(base, {})
    if "median" not in a or "median" not in b or not b["median"] or not a["median"]:
        return None
    return speedup(a["median"], b["median"], metric)


def paired(runs: dict, loop: str, base: str, metric: str) -> tuple[float, int, int] | None:
    """`loop` against `base` round by round: repetition i of every loop runs in round i, minutes
    apart at most, so a pair shares the machine's state that drifts between rounds. Returns the
    median of the pairs' ratios, in how many pairs `loop` was ahead, and how many there were."""
    pairs = [
        speedup(value_of(a, metric), value_of(b, metric), metric)
        for a, b in zip(runs.get(loop, []), runs.get(base, []))
        if "error" not in a and "error" not in b
    ]
    if not pairs:
        return None
    return statistics.median(pairs), sum(r > 1 for r in pairs), len(pairs)


def fmt_value(x: float, metric: str) -> str:
    if metric == "memory":
        return f"{x:,.1f} MiB"
    return f"{x:,.0f}/s"


def cpu_cell(summary: dict) -> str:
    """A loop's CPU time per operation, with its user-space part where the runs have it."""
    if "cpu_us_per_op" not in summary:
        return "–"
    total = f"{summary['cpu_us_per_op']:,.2f}"
    if "user_us_per_op" not in summary:
        return total
    return f"{total} ({summary['user_us_per_op']:,.2f} user)"


def markdown(results: dict, header: dict) -> str:
    lines = [
        "# ferroloop benchmarks",
        "",
        f"Measured {header['date']} on {header['machine']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".",
        f"Mode: {header['mode']}, {header['reps']} fresh-process runs per loop, interleaved.",
        "Throughput rows: operations per second, higher is better. Memory rows: extra MiB over",
        "the process's baseline, lower is better. Ratios >1 mean ferroloop is ahead.",
        "",
        "| workload | " + " | ".join(header["loops"]) + " | vs asyncio | vs uvloop | vs rloop |",
        "|---" * (len(header["loops"]) + 4) + "|",
    ]
    for name, entry in results.items():
        metric, summary = entry["metric"], entry["summary"]
        cells = []
        for loop in header["loops"]:
            s = summary.get(loop, {})
            if "median" in s:
                cells.append(
                    f"{fmt_value(s['median'], metric)} ({fmt_value(s['min'], metric)}"
                    f"–{fmt_value(s['max'], metric)})"
                )
            else:
                cells.append("n/a: " + s.get("error", "not run"))
        rs = [ratio(summary, "ferroloop", base, metric) for base in ("asyncio", "uvloop", "rloop")]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + " | "
            + " | ".join("–" if r is None else f"{r:.2f}x" for r in rs)
            + " |"
        )
    ceiling_rows = [(n, e) for n, e in results.items() if "ceiling" in e]
    if ceiling_rows:
        lines += [
            "",
            "The ceiling: the same client against a pure-Rust mio echo server",
            "(benchmarks/loadgen), and ferroloop's share of it.",
            "",
            "| workload | mio server | ferroloop | ferroloop's share |",
            "|---|---|---|---|",
        ]
        for name, entry in ceiling_rows:
            ferro = entry["summary"].get("ferroloop", {}).get("median")
            share = f"{100 * ferro / entry['ceiling']:.0f}%" if ferro else "–"
            shown = fmt_value(ferro, "time") if ferro else "–"
            lines.append(f"| {name} | {fmt_value(entry['ceiling'], 'time')} | {shown} | {share} |")
    placed = [(n, e) for n, e in results.items() if e.get("placement")]
    if placed:
        lines += [
            "",
            "CPU time of the measured process (the one running the loop: the server, or the",
            "database client) per operation, user and system, in microseconds, and in brackets",
            "the part of it in user space (the loop's own code and the program's), medians over",
            "the runs; lower is better. With the other process on another core this includes what",
            "the measured process's wake-ups cost it. Where the kernel accounts CPU time by ticks,",
            "the user part is a sample of them (at 250 Hz, 25 ticks for 0.1 s).",
            "",
            "| workload | " + " | ".join(header["loops"]) + " |",
            "|---" * (len(header["loops"]) + 1) + "|",
        ]
        for name, entry in placed:
            cells = [cpu_cell(entry["summary"].get(lp, {})) for lp in header["loops"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    round_by_round = [
        (name, base, pair)
        for name, entry in results.items()
        for base in ("uvloop", "rloop")
        if (r := ratio(entry["summary"], "ferroloop", base, entry["metric"]))
        and (pair := paired(entry["runs"], "ferroloop", base, entry["metric"]))
        and worth_pairing(r, pair[0])
    ]
    if round_by_round:
        lines += [
            "",
            f"Rows where ferroloop is within {CLOSE:.0%} of a peer, or whose rounds read the other",
            "way, round by round: each round runs every loop once, so pairing the runs of a round",
            "takes out what drifts between rounds. The median of the pairs' ratios, and in how",
            "many pairs ferroloop was ahead.",
            "",
            "| workload | peer | median of paired ratios | ferroloop ahead |",
            "|---|---|---|---|",
        ]
        for name, base, (median, ahead, n) in round_by_round:
            lines.append(f"| {name} | {base} | {median:.3f}x | {ahead} of {n} |")
    lines += ["", "Geometric mean of ferroloop's ratio over every row:", ""]
    for base in ("asyncio", "uvloop", "rloop"):
        rs = [ratio(e["summary"], "ferroloop", base, e["metric"]) for e in results.values()]
        rs = [r for r in rs if r]
        if rs:
            gm = math.exp(sum(math.log(r) for r in rs) / len(rs))
            lines.append(f"- vs {base}: {gm:.2f}x over {len(rs)} workloads")
    return "\n".join(lines) + "\n"


def chart(results: dict, header: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    loops = [lp for lp in header["loops"] if lp != "asyncio"]
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(names) + 2))
    height = 0.8 / len(loops)
    for i, loop in enumerate(loops):
        values = [
            ratio(results[n]["summary"], loop, "asyncio", results[n]["metric"]) or 0 for n in names
        ]
        ax.barh([y + i * height for y in range(len(names))], values, height, label=loop)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([y + height * (len(loops) - 1) / 2 for y in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up vs stdlib asyncio (memory rows: asyncio's MiB / loop's MiB)")
    ax.set_title(f"ferroloop benchmarks, {header['date']}, {header['machine']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 3 repetitions")
    # The full run: 5 repetitions, full sizes (about 27 minutes on 2 cores).
    parser.add_argument("--reps", type=int)
    parser.add_argument(
        "--only",
        action="append",
        help="run the workloads whose name contains this (given again: any of these)",
    )
    parser.add_argument("--loops", default=",".join(ALL_LOOPS))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--docs", action="store_true", help="also write docs/benchmarks.md + png")
    parser.add_argument(
        "--render", metavar="JSON", help="run nothing: report the runs saved in this results file"
    )
    args = parser.parse_args()

    rows = {
        row: (name, workload, placement)
        for name, workload in ALL.items()
        for row, placement in placed_rows(name, workload)
    }
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        results = saved["results"]
        for row, entry in results.items():
            # Summarized again, so that a report of an older file has what reports have now.
            entry["summary"] = summarize(entry["runs"], entry["metric"])
            entry["placement"] = rows[row][2] if row in rows else None
        report(results, saved["header"], None, args.docs)
        return

    loops = args.loops.split(",")
    reps = args.reps or (3 if args.quick else 5)
    chosen = {
        row: spec
        for row, spec in rows.items()
        if not args.only or any(part in row for part in args.only)
    }
    header = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "versions": versions(),
        "mode": "quick" if args.quick else "full",
        "reps": reps,
        "loops": loops,
    }
    print(f"# {header['machine']}; {header['versions']}", flush=True)
    results = {}
    for row, (name, workload, placement) in chosen.items():
        size = workload.quick_size if args.quick else workload.size
        runs: dict[str, list[dict]] = {loop: [] for loop in loops}
        for rep in range(reps):
            order = loops[rep % len(loops) :] + loops[: rep % len(loops)]
            for loop in order:
                reason = (workload.unsupported or {}).get(loop)
                if reason:
                    runs[loop].append({"error": reason})
                    continue
                try:
                    runs[loop].append(
                        run_once(loop, name, size, 120 if args.quick else 300, placement)
                    )
                except subprocess.TimeoutExpired:
                    runs[loop].append({"error": "timed out"})
        summary = summarize(runs, workload.metric)
        results[row] = {
            "metric": workload.metric,
            "size": size,
            "placement": placement,
            "summary": summary,
            "runs": runs,
        }
        if workload.ceiling is not None:
            # The ceiling is a fixed Rust server: in quick mode one measurement is enough.
            ceilings = [workload.ceiling(size, placement) for _ in range(1 if args.quick else reps)]
            results[row]["ceiling"] = statistics.median(ceilings)
        cells = ", ".join(
            f"{lp}={fmt_value(s['median'], workload.metric)}"
            if "median" in s
            else f"{lp}=n/a ({s['error']})"
            for lp, s in summary.items()
        )
        print(f"{row}: {cells}", flush=True)

    report(results, header, Path(args.out), args.docs)


def report(results: dict, header: dict, out: Path | None, docs: bool) -> None:
    """Prints the report; saves the runs and the report in `out`, and in docs/ if `docs`."""
    md = markdown(results, header)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (out / f"{stamp}.json").write_text(
            json.dumps({"header": header, "results": results}, indent=1)
        )
        (out / f"{stamp}.md").write_text(md)
    print()
    print(md)
    if docs:
        folder = ROOT / "docs"
        folder.mkdir(exist_ok=True)
        (folder / "benchmarks.md").write_text(md + "\n![speed-up chart](benchmarks.png)\n")
        chart(results, header, folder / "benchmarks.png")


if __name__ == "__main__":
    main()
