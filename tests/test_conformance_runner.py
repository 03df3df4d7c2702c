"""The conformance runner's bookkeeping: what counts as a pass, and what fails the run."""

from __future__ import annotations

from conformance.run import evaluate

MOD = "test.test_asyncio.test_x.Case"


def result(outcome: str, ferroloop_loops: int = 1) -> dict:
    return {"outcome": outcome, "ferroloop_loops": ferroloop_loops, "detail": "boom"}


def test_listed_failures_pass_the_run_and_count_as_failures():
    per_module = {"test_x": {f"{MOD}.test_a": result("passed"), f"{MOD}.test_b": result("error")}}
    rows, problems, classes = evaluate(per_module, [(f"{MOD}.test_b", "issue-3", "why")], [])
    assert problems == []
    assert rows == [("test_x", {"passed": 1, "error": 1})]
    assert classes[f"{MOD}.test_b"] == "error"


def test_unlisted_failure_fails_the_run():
    per_module = {"test_x": {f"{MOD}.test_b": result("hung")}}
    _, problems, _ = evaluate(per_module, [], [])
    assert problems == [f"unexpected hung: {MOD}.test_b: boom"]


def test_listed_test_that_passes_fails_the_run():
    per_module = {"test_x": {f"{MOD}.test_a": result("passed")}}
    _, problems, _ = evaluate(per_module, [(f"{MOD}.*", "issue-3", "why")], [])
    assert problems == [f"unexpected pass (remove from expected_failures.txt): {MOD}.test_a"]


def test_stale_pattern_fails_the_run():
    per_module = {"test_x": {f"{MOD}.test_a": result("passed")}}
    _, problems, _ = evaluate(per_module, [("*.test_gone", "issue-4", "why")], [])
    assert problems == ["stale expected failure (issue-4): *.test_gone matches no test"]


def test_tests_without_a_ferroloop_loop_never_count_as_passes():
    per_module = {
        "test_x": {
            f"{MOD}.test_mock": result("passed", ferroloop_loops=0),
            f"{MOD}.test_internal": result("passed"),
        }
    }
    rows, problems, classes = evaluate(
        per_module, [], [(f"{MOD}.test_internal", "internals", "reads loop._selector")]
    )
    assert problems == []
    assert classes == {
        f"{MOD}.test_mock": "not-exercising",
        f"{MOD}.test_internal": "stdlib-internal",
    }
    assert rows == [("test_x", {"not-exercising": 1, "stdlib-internal": 1})]


def test_a_mixin_named_two_ways_binds_the_one_the_module_has():
    # "A|B": the first of the names the module has (3.14 dropped test_events' Unix mixin).
    import types

    from conformance import child
    from conformance.modules import Binding

    module = types.ModuleType("test.test_asyncio.renamed")

    class EventLoopTestsMixin:
        pass

    module.EventLoopTestsMixin = EventLoopTestsMixin
    binding = Binding(
        ("UnixEventLoopTestsMixin|EventLoopTestsMixin",), "unittest.TestCase", "create_event_loop"
    )
    bound, bases = child._bound_class(module, binding)
    assert bases == (EventLoopTestsMixin,)
    assert bound.__name__ == "FerroloopEventLoopTestsMixin"
    loop = bound().create_event_loop()
    loop.close()
    assert type(loop).__name__ == "EventLoop"
