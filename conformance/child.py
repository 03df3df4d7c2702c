"""Runs one module of CPython's asyncio test-suite against ferroloop, one test at a time.

Writes one JSON line per event to the file given: {"start": id}, then {"result": id, "outcome": ...,
"ferroloop_loops": n, "stdlib_loops": n, "detail": ...}. A test that hangs longer than the watchdog
kills the process (faulthandler prints where it hung); the parent then records it and starts a new
child after it.

    python -m conformance.child MODULE OUT.jsonl [--after TEST_ID] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import signal
import sys
import traceback
import unittest

import ferroloop
from ferroloop._loop import EventLoop

from .modules import BY_NAME, Binding

# Loops created during the current test, by kind.
COUNTS = {"ferroloop": 0, "stdlib": 0}


def _count_loops() -> None:
    ferro_init = EventLoop.__init__
    stdlib_init = asyncio.BaseEventLoop.__init__

    def counting_ferro_init(self, *args, **kwargs):
        COUNTS["ferroloop"] += 1
        ferro_init(self, *args, **kwargs)

    def counting_stdlib_init(self, *args, **kwargs):
        COUNTS["stdlib"] += 1
        stdlib_init(self, *args, **kwargs)

    EventLoop.__init__ = counting_ferro_init
    asyncio.BaseEventLoop.__init__ = counting_stdlib_init


def _make_ferroloop_default() -> None:
    # From 3.13 some modules name asyncio.EventLoop as their loop factory (a class attribute of
    # their test cases, read when the module is imported): that name is bound to ferroloop's class.
    if hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = ferroloop.EventLoop
    # The suite resets the policy with set_event_loop_policy(None) in every tearDownModule; the
    # next policy it creates is asyncio.DefaultEventLoopPolicy (3.14, where that public name is
    # deprecated: unix_events._DefaultEventLoopPolicy), so those names are what get bound.
    if hasattr(asyncio.unix_events, "_DefaultEventLoopPolicy"):
        asyncio.unix_events._DefaultEventLoopPolicy = ferroloop.EventLoopPolicy
        asyncio.events._set_event_loop_policy(None)
        return
    asyncio.DefaultEventLoopPolicy = ferroloop.EventLoopPolicy
    asyncio.events.DefaultEventLoopPolicy = ferroloop.EventLoopPolicy
    asyncio.set_event_loop_policy(None)


def _bound_class(module, binding: Binding):
    from test.test_asyncio import utils as test_utils

    names = [next(n for n in entry.split("|") if hasattr(module, n)) for entry in binding.mixins]
    bases = tuple(getattr(module, name) for name in names)
    base = test_utils.TestCase if binding.base == "test_utils.TestCase" else unittest.TestCase
    namespace = {
        binding.factory: lambda self: ferroloop.new_event_loop(),
        "__module__": module.__name__,
    }
    if binding.setup_loop_in_setup:

        def setUp(self):
            base.setUp(self)
            self.loop = ferroloop.new_event_loop()
            self.set_event_loop(self.loop)

        namespace["setUp"] = setUp
    name = "Ferroloop" + "".join(names)
    return type(name, (*bases, base), namespace), bases


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def collect(module_name: str) -> list[unittest.TestCase]:
    module = importlib.import_module(f"test.test_asyncio.{module_name}")
    spec = BY_NAME[module_name]
    loader = unittest.TestLoader()
    tests = []
    if not spec.bindings:
        return list(_flatten(loader.loadTestsFromModule(module)))
    bound_mixins = []
    for binding in spec.bindings:
        cls, mixins = _bound_class(module, binding)
        bound_mixins.extend(mixins)
        tests.extend(_flatten(loader.loadTestsFromTestCase(cls)))
    # The module's other test classes, minus its own loop-specific bindings of the same mixins.
    for name in dir(module):
        obj = getattr(module, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, unittest.TestCase)
            and obj.__module__ == module.__name__
            and not any(issubclass(obj, m) for m in bound_mixins)
        ):
            tests.extend(_flatten(loader.loadTestsFromTestCase(obj)))
    return tests


def check_loop_under_test(module_name: str) -> None:
    """The loop these tests get must be ferroloop's: fail the module loudly otherwise."""
    spec = BY_NAME[module_name]
    if spec.bindings:
        return  # the bound classes construct ferroloop.new_event_loop() themselves
    loop = asyncio.new_event_loop()
    try:
        if not isinstance(loop, EventLoop):
            raise SystemExit(f"{module_name}: asyncio.new_event_loop() gave {type(loop)!r}")
    finally:
        loop.close()


class JsonlResult(unittest.TestResult):
    def __init__(self, out, timeout: float):
        super().__init__()
        self.out = out
        self.timeout = timeout
        self.outcomes: dict[str, tuple[str, str]] = {}

    def _emit(self, record: dict) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        COUNTS["ferroloop"] = COUNTS["stdlib"] = 0
        self.outcomes[test.id()] = ("passed", "")
        self._emit({"start": test.id()})
        faulthandler.dump_traceback_later(self.timeout, exit=True)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        outcome, detail = self.outcomes.pop(test.id(), ("passed", ""))
        self._emit(
            {
                "result": test.id(),
                "outcome": outcome,
                "detail": detail[-2000:],
                "ferroloop_loops": COUNTS["ferroloop"],
                "stdlib_loops": COUNTS["stdlib"],
            }
        )
        super().stopTest(test)

    def _set(self, test, outcome, detail=""):
        # A test can report several things (subtests, then a failure): the worst one wins.
        rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
        test_id = test.id() if isinstance(test, unittest.TestCase) else str(test)
        old = self.outcomes.get(test_id, ("passed", ""))
        if rank[outcome] >= rank[old[0]]:
            self.outcomes[test_id] = (outcome, detail)

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", "".join(traceback.format_exception(*err)))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "failed", "".join(traceback.format_exception(*err)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "failed", "unexpected success of a test the suite marks expectedFailure")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failed" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest}: " + "".join(traceback.format_exception(*err)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("module")
    parser.add_argument("out")
    parser.add_argument("--after", help="run only the tests after this one")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--list", action="store_true", help="only write the test ids")
    args = parser.parse_args()

    # What Python sets up when started from a terminal: a child of a background job (`cmd &` in
    # a non-interactive shell) starts with SIGINT ignored, and CPython's tests that interrupt a
    # run with SIGINT then hang, on any loop.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _make_ferroloop_default()
    tests = collect(args.module)
    with open(args.out, "a") as out:
        if args.list:
            for test in tests:
                out.write(json.dumps({"test": test.id()}) + "\n")
            return
        check_loop_under_test(args.module)
        if args.after:
            ids = [t.id() for t in tests]
            tests = tests[ids.index(args.after) + 1 :] if args.after in ids else []
        _count_loops()
        faulthandler.enable(file=sys.stderr)
        result = JsonlResult(out, args.timeout)
        unittest.TestSuite(tests).run(result)


if __name__ == "__main__":
    main()
