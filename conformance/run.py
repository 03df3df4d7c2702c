"""CPython's asyncio test-suite against ferroloop: run, classify, check against expected failures.

Each module runs in child processes (`conformance.child`), one test at a time under a watchdog; a
crash or hang costs only the test it happened in (recorded as crashed or hung, i.e. failed), and the
module goes on in a new child after it. Tests that never ran count as failed too.

Classification of each test:
  passed / failed / error / crashed / hung / unrun / skipped, as run;
  not-exercising: passed without creating a ferroloop loop (it tested stdlib internals, e.g. with
    test_utils.TestLoop): reported apart, never a pass;
  stdlib-internal: listed in stdlib_internal.txt with a reason: reported apart, never a pass.
A failing test must be listed in expected_failures.txt (pattern, issue, reason); a listed test that
passes, or a pattern that matches no failing test, fails the run, so the list cannot go stale.

    python -m conformance.run [--jobs N] [--only MODULE[,MODULE]] [--json PATH] [--docs]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .modules import MODULES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FAILING = {"failed", "error", "crashed", "hung", "unrun"}


def read_list(path: Path) -> list[tuple[str, str, str]]:
    """(pattern, issue, reason) lines; '#' starts a comment line."""
    entries = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, issue, reason = (line.split(None, 2) + ["", ""])[:3]
        entries.append((pattern, issue, reason))
    return entries


def run_child(module: str, out: Path, extra: list[str], timeout: float) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "conformance.child", module, str(out), *extra]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        return -9, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (
            e.stderr or ""
        )


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by a crash
    return records


def run_module(module: str, test_timeout: float) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.jsonl"
        rc, err = run_child(module, listing, ["--list"], timeout=300)
        ids = [r["test"] for r in read_jsonl(listing)]
        if rc != 0 or not ids:
            return {f"{module}.<collection>": {"outcome": "error", "detail": err[-2000:]}}
        results: dict[str, dict] = {}
        after: str | None = None
        attempt = 0
        while len(results) < len(ids):
            attempt += 1
            out = Path(tmp) / f"run{attempt}.jsonl"
            extra = ["--timeout", str(test_timeout)] + (["--after", after] if after else [])
            remaining = len(ids) - len(results)
            rc, err = run_child(module, out, extra, timeout=test_timeout * 3 + 5 * remaining + 60)
            started = None
            for record in read_jsonl(out):
                if "start" in record:
                    started = record["start"]
                elif "result" in record:
                    results[record["result"]] = record
                    started = None
            if len(results) >= len(ids):
                break
            if started is None:
                # The child stopped between tests or before the first one: what is left never ran.
                for test_id in ids:
                    results.setdefault(
                        test_id, {"outcome": "unrun", "detail": err[-2000:] or f"exit {rc}"}
                    )
                break
            hung = "Timeout (" in err or rc == -9
            results[started] = {
                "outcome": "hung" if hung else "crashed",
                "detail": err[-2000:] or f"exit {rc}",
            }
            after = started
        return {test_id: results[test_id] for test_id in ids if test_id in results}


def classify(results: dict[str, dict], internal: list[tuple[str, str, str]]) -> dict[str, str]:
    classes = {}
    for test_id, record in results.items():
        outcome = record["outcome"]
        if any(fnmatch.fnmatchcase(test_id, p) for p, _, _ in internal):
            outcome = "stdlib-internal"
        elif outcome == "passed" and not record.get("ferroloop_loops"):
            outcome = "not-exercising"
        classes[test_id] = outcome
    return classes


def evaluate(
    per_module: dict[str, dict[str, dict]],
    expected: list[tuple[str, str, str]],
    internal: list[tuple[str, str, str]],
) -> tuple[list[tuple[str, dict[str, int]]], list[str], dict[str, str]]:
    """Per-module outcome counts, the problems that fail the run, and each test's class."""
    rows, problems, all_classes = [], [], {}
    used_patterns = set()
    for module, results in per_module.items():
        classes = classify(results, internal)
        all_classes.update(classes)
        counts: dict[str, int] = {}
        for test_id, outcome in classes.items():
            counts[outcome] = counts.get(outcome, 0) + 1
            matching = [p for p, _, _ in expected if fnmatch.fnmatchcase(test_id, p)]
            used_patterns.update(matching)
            if outcome in FAILING and not matching:
                detail = results[test_id].get("detail", "").strip().splitlines()
                problems.append(f"unexpected {outcome}: {test_id}: {(detail or [''])[-1][:200]}")
            elif outcome == "passed" and matching:
                problems.append(f"unexpected pass (remove from expected_failures.txt): {test_id}")
        rows.append((module, counts))
    for pattern, issue, _ in expected:
        if pattern not in used_patterns:
            problems.append(f"stale expected failure ({issue}): {pattern} matches no test")
    return rows, problems, all_classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", help="comma-separated module names")
    parser.add_argument("--test-timeout", type=float, default=30.0)
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--docs", action="store_true", help="also write docs/conformance.md")
    args = parser.parse_args()

    modules = [m.name for m in MODULES]
    if args.only:
        modules = [m for m in modules if m in args.only.split(",")]
    # Modules of later Pythons' suites (test_taskgroups is new in 3.11) are left out before them.
    absent = [m for m in modules if importlib.util.find_spec(f"test.test_asyncio.{m}") is None]
    modules = [m for m in modules if m not in absent]
    # Patterns name their module (test.test_asyncio.MODULE.…): with --only, judge only those run.
    expected = [
        e for e in read_list(HERE / "expected_failures.txt") if e[0].split(".")[2] in modules
    ]
    internal = read_list(HERE / "stdlib_internal.txt")

    start = time.monotonic()
    done: dict[str, dict[str, dict]] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_module, m, args.test_timeout): m for m in modules}
        for fut in concurrent.futures.as_completed(futures):
            done[futures[fut]] = fut.result()
            print(f"  {futures[fut]}: {len(done[futures[fut]])} tests", flush=True)
    per_module = {m: done[m] for m in modules}

    rows, problems, all_classes = evaluate(per_module, expected, internal)

    def n(counts, *keys):
        return sum(counts.get(k, 0) for k in keys)

    header = (
        "| module | run | passed | failed | errors | crashed/hung/unrun | skipped "
        "| not exercising ferroloop | stdlib-internal |"
    )
    lines = [header, "|---" * 9 + "|"]
    total: dict[str, int] = {}
    for module, counts in rows:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        lines.append(
            f"| {module} | {sum(counts.values())} | {n(counts, 'passed')} | {n(counts, 'failed')} "
            f"| {n(counts, 'error')} | {n(counts, 'crashed', 'hung', 'unrun')} "
            f"| {n(counts, 'skipped')} | {n(counts, 'not-exercising')} "
            f"| {n(counts, 'stdlib-internal')} |"
        )
    applicable = n(total, "passed", *FAILING)
    rate = 100.0 * n(total, "passed") / applicable if applicable else 0.0
    lines.append(
        f"| **total** | {sum(total.values())} | {n(total, 'passed')} | {n(total, 'failed')} "
        f"| {n(total, 'error')} | {n(total, 'crashed', 'hung', 'unrun')} | {n(total, 'skipped')} "
        f"| {n(total, 'not-exercising')} | {n(total, 'stdlib-internal')} |"
    )
    summary = (
        f"Pass rate: {rate:.1f}% ({n(total, 'passed')} of {applicable} applicable tests; skipped, "
        f"not-exercising and stdlib-internal tests are not counted), "
        f"Python {sys.version.split()[0]}, {time.monotonic() - start:.0f} s."
    )
    if absent:
        summary += f" Not in this Python's suite: {', '.join(absent)}."
    table = "\n".join(lines)
    print()
    print(table)
    print()
    print(summary)

    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "pass_rate": rate,
                "tests": {
                    t: {"class": all_classes[t], **per_module[t.split(".")[2]][t]}
                    for t in sorted(all_classes)
                    if t.count(".") >= 2 and t.split(".")[2] in per_module
                },
            },
            indent=1,
        )
    )
    if args.docs:
        (ROOT / "docs" / "conformance.md").write_text(
            "# CPython asyncio test-suite on ferroloop\n\n"
            "Produced by `python -m conformance.run --docs` (part of `make test`).\n\n"
            f"{table}\n\n{summary}\n"
        )
    if problems:
        print()
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
