"""call_soon, call_later, call_at, call_soon_threadsafe and the order of one loop turn."""

from __future__ import annotations

import asyncio
import contextvars
import math
import sys
import threading
import time
from unittest import mock

import ferroloop
import pytest
from conftest import collect_garbage, pending_timers, run_turns


def test_call_soon_runs_in_fifo_order_with_args(loop):
    seen = []
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [0, 1, 2, 3, 4]


def test_a_turn_runs_only_callbacks_ready_when_it_began(loop):
    seen = []

    def first():
        seen.append("first")
        loop.call_soon(seen.append, "next-turn")
        loop.stop()

    loop.call_soon(first)
    loop.call_soon(seen.append, "same-turn")
    loop.run_forever()
    assert seen == ["first", "same-turn"]
    run_turns(loop)
    assert seen == ["first", "same-turn", "next-turn"]


def test_stop_before_run_forever_runs_one_turn(loop):
    seen = []
    loop.call_soon(seen.append, 1)
    loop.stop()
    loop.run_forever()
    assert seen == [1]
    assert not loop.is_running()


def test_cancelled_handle_does_not_run(loop):
    seen = []
    h = loop.call_soon(seen.append, 1)
    assert not h.cancelled()
    h.cancel()
    h.cancel()
    assert h.cancelled()
    run_turns(loop)
    assert seen == []


def test_timers_fire_by_deadline(loop):
    seen = []
    now = loop.time()
    loop.call_at(now + 0.02, seen.append, "c")
    loop.call_at(now + 0.01, seen.append, "a")
    loop.call_at(now + 0.015, seen.append, "b")
    loop.call_later(-1, seen.append, "neg1")
    loop.call_later(-2, seen.append, "neg2")
    loop.call_at(now + 0.03, loop.stop)
    loop.run_forever()
    assert seen == ["neg2", "neg1", "a", "b", "c"]


def test_equal_deadlines_fire_in_insertion_order():
    # asyncio documents this order as undefined (its heap is not stable); ferroloop guarantees it.
    loop = ferroloop.new_event_loop()
    try:
        seen = []
        when = loop.time() + 0.01
        for i in range(50):
            loop.call_at(when, seen.append, i)
        loop.call_at(when + 0.01, loop.stop)
        loop.run_forever()
        assert seen == list(range(50))
    finally:
        loop.close()


def test_due_timers_join_after_ready_callbacks(loop):
    seen = []
    loop.call_later(0, seen.append, "timer")
    loop.call_soon(seen.append, "soon")
    run_turns(loop, 2)
    assert seen == ["soon", "timer"]


def test_nan_delay_is_accepted_and_fires_at_once(loop):
    seen = []
    h = loop.call_later(math.nan, seen.append, "nan")
    assert math.isnan(h.when())
    run_turns(loop)
    assert seen == ["nan"]


@pytest.mark.parametrize("delay", [math.inf, 1e300, 10**400 // 10**390])
def test_huge_delays_wait_without_error(loop, delay):
    seen = []
    h = loop.call_later(delay, seen.append, 1)
    run_turns(loop)
    assert seen == []
    assert h.when() >= loop.time()
    h.cancel()


def test_delay_type_errors_match_asyncio(loop):
    if sys.version_info >= (3, 11):
        none_delay = "^delay must not be None$"
    else:  # no check before 3.11: the sum fails
        none_delay = r"^unsupported operand type\(s\) for \+: 'float' and 'NoneType'$"
    with pytest.raises(TypeError, match=none_delay):
        loop.call_later(None, print)
    with pytest.raises(
        TypeError, match=r"^unsupported operand type\(s\) for \+: 'float' and 'str'$"
    ):
        loop.call_later("1", print)
    if sys.version_info < (3, 11) and not isinstance(loop, ferroloop.EventLoop):
        # Before 3.11 asyncio's only check was TimerHandle's `assert when is not None`;
        # ferroloop raises 3.11's TypeError on every version.
        with pytest.raises(AssertionError):
            loop.call_at(None, print)
        return
    with pytest.raises(TypeError, match="^when cannot be None$"):
        loop.call_at(None, print)


def test_time_is_time_monotonic(loop):
    before = time.monotonic()
    now = loop.time()
    after = time.monotonic()
    assert before <= now <= after


def test_closed_loop_refuses_callbacks(loop):
    loop.close()
    for schedule in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        lambda: loop.run_forever(),
    ):
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            schedule()


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    guard = loop.call_later(30, loop.stop)
    started = threading.Event()

    def other_thread():
        started.wait()
        time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(started.set)
    t = threading.Thread(target=other_thread)
    t.start()
    t0 = time.monotonic()
    loop.run_forever()
    t.join()
    assert time.monotonic() - t0 < 10
    guard.cancel()


def test_call_soon_threadsafe_from_many_threads(loop):
    seen = []
    n_threads, per_thread = 4, 200

    def producer(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(seen.append, (k, i))

    def done_check():
        if len(seen) == n_threads * per_thread:
            loop.stop()
        else:
            loop.call_later(0.001, done_check)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    loop.call_soon(lambda: [t.start() for t in threads])
    loop.call_soon(done_check)
    guard = loop.call_later(30, loop.stop)
    loop.run_forever()
    for t in threads:
        t.join()
    guard.cancel()
    for k in range(n_threads):
        assert [i for kk, i in seen if kk == k] == list(range(per_thread))


def test_call_soon_threadsafe_runs_in_a_copy_of_the_calling_threads_context(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []

    def producer():
        var.set("producer's")
        for _ in range(100):
            loop.call_soon_threadsafe(lambda: seen.append(var.get()))
        var.set("changed after scheduling")

    var.set("loop thread's")
    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    run_turns(loop)
    assert seen == ["producer's"] * 100


def test_call_soon_threadsafe_from_a_thread_that_never_used_a_context(loop):
    # A new thread has no current Context until something asks for one: its callbacks run in an
    # empty one, not in the loop thread's.
    var = contextvars.ContextVar("var", default="default")
    var.set("loop thread's")
    seen = []

    def producer():
        for _ in range(100):
            loop.call_soon_threadsafe(lambda: seen.append(var.get()))

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    run_turns(loop)
    assert seen == ["default"] * 100


def test_callbacks_run_in_their_context(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    h = loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    assert h._context is ctx
    var.set("at-schedule-time")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("later")
    loop.call_later(0, lambda: seen.append(var.get()), context=ctx)
    run_turns(loop, 2)
    assert seen == ["in-ctx", "at-schedule-time", "in-ctx"]


def test_callbacks_behind_a_long_queue_keep_their_own_copy_of_the_context(loop):
    # ferroloop's handles hold the copied variables and make the Context late: what each callback
    # sees and changes must be what a copy at scheduling gives.
    var = contextvars.ContextVar("var", default="default")
    other = contextvars.ContextVar("other", default="untouched")
    seen = []

    def callback(i):
        seen.append((i, var.get(), other.get()))
        other.set(f"set by {i}")

    def schedule():
        handles = []
        for i in range(300):
            var.set(i)
            if i % 3 == 0:
                handles.append(loop.call_soon(callback, i))
            elif i % 3 == 1:
                handles.append(loop.call_later(0, callback, i))
            else:
                handles.append(loop.call_soon_threadsafe(callback, i))
        var.set("after")
        return handles

    handles = contextvars.copy_context().run(schedule)
    # `_context`: asyncio's handles have `get_context()` from 3.12 on only.
    early = handles[250]._context
    assert early[var] == 250 and other not in early
    run_turns(loop, 2)
    assert sorted(seen) == [(i, i, "untouched") for i in range(300)]
    # A held handle keeps the Context its callback ran in, with the callback's change.
    assert handles[250]._context is early
    assert early[other] == "set by 250"
    assert handles[299]._context[other] == "set by 299"
    assert var.get() == "default" and other.get() == "untouched"


def test_a_context_a_token_keeps_is_never_another_callbacks(loop):
    # Behind a long queue ferroloop runs such callbacks in one reused Context while nobody else
    # holds it; a token from ContextVar.set holds it, so the next callback needs a Context of its
    # own: resetting the token there fails as it does in asyncio's fresh copy.
    var = contextvars.ContextVar("var", default="default")
    tokens, seen = [], []

    def keep_token(i):
        tokens.append(var.set(i))

    def reset_previous(i):
        try:
            var.reset(tokens[-1])
        except ValueError as exc:  # raised in a callback, the loop would only log it
            seen.append((var.get(), str(exc).endswith("was created in a different Context")))
        else:
            seen.append((var.get(), "reset"))

    for i in range(200):
        loop.call_soon(reset_previous if i % 2 else keep_token, i)
    run_turns(loop)
    assert seen == [("default", True)] * 100
    assert [token.old_value for token in tokens] == [contextvars.Token.MISSING] * 100


def test_values_a_callback_set_are_released_when_it_returns(loop):
    import weakref

    class Value:
        pass

    var = contextvars.ContextVar("var")
    refs, alive = [], []

    def set_value():
        value = Value()
        refs.append(weakref.ref(value))
        var.set(value)

    def check():
        alive.append(refs[-1]() is not None)

    for _ in range(100):
        loop.call_soon(set_value)
        # In a Context of its own, so that it cannot release what set_value's left behind.
        loop.call_soon(check, context=contextvars.Context())
    run_turns(loop)
    assert alive == [False] * 100


def test_context_changes_stay_in_the_callbacks_context(loop):
    var = contextvars.ContextVar("var", default=0)
    ctx = contextvars.copy_context()
    loop.call_soon(var.set, 5, context=ctx)
    run_turns(loop)
    assert ctx[var] == 5
    assert var.get() == 0


def test_cancelled_timers_are_compacted(loop):
    handles = [loop.call_later(100 + i, print) for i in range(1000)]
    for h in handles[:900]:
        h.cancel()
    assert loop._timer_cancelled_count == 900
    run_turns(loop)
    assert pending_timers(loop) == 100
    assert loop._timer_cancelled_count == 0
    for h in handles[900:]:
        h.cancel()
    run_turns(loop)
    assert pending_timers(loop) == 0


def test_cancelled_timer_at_heap_head_is_dropped(loop):
    h = loop.call_later(100, print)
    loop.call_later(200, print)
    h.cancel()
    assert h._scheduled
    run_turns(loop)
    assert pending_timers(loop) == 1
    assert not h._scheduled


def test_timer_handle_interface(loop):
    a = loop.call_at(10, print)
    b = loop.call_at(20, print)
    assert a.when() == 10
    assert a < b and b > a and a <= b and not a >= b
    assert a != b
    assert hash(a) == hash(10.0)
    a.cancel()
    b.cancel()


@pytest.mark.parametrize("args", [(), ("one",), (1, (2,), [3])])
@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_handles_show_their_callback_and_arguments(loop, method, args):
    # ferroloop keeps a callback and its arguments as one reference; `_callback`, `_args`, the
    # call, equality of timers and cancellation must look as asyncio's two slots do.
    seen = []

    def callback(*a):
        seen.append(a)

    schedule = getattr(loop, method)
    if method in ("call_later", "call_at"):
        handles = [schedule(0, callback, *args) for _ in range(2)]
        # Timers compare by deadline, then cancellation, callback and arguments.
        assert (handles[0] == handles[1]) is (method == "call_at")
    else:
        handles = [schedule(callback, *args) for _ in range(2)]
    for handle in handles:
        assert handle._callback is callback
        assert handle._args == args and type(handle._args) is tuple
    handles[1].cancel()
    assert handles[1]._callback is None and handles[1]._args is None
    if method == "call_at":
        assert handles[0] != handles[1]
    run_turns(loop, 2)
    assert seen == [args]


def test_handle_get_context():
    # Handle.get_context() is new in Python 3.12; ferroloop's handles have it on every version.
    loop = ferroloop.new_event_loop()
    try:
        ctx = contextvars.copy_context()
        assert loop.call_soon(print, context=ctx).get_context() is ctx
        assert loop.call_later(1, print, context=ctx).get_context() is ctx
    finally:
        loop.close()


def test_fired_timer_in_a_reference_cycle_is_collected(loop):
    import gc
    import weakref

    class Owner:
        def on_timer(self):
            self.fired = True

    owner = Owner()
    owner.timer = loop.call_later(0, owner.on_timer)
    owner.soon = loop.call_soon(owner.on_timer)
    ref = weakref.ref(owner)
    run_turns(loop, 2)
    assert owner.fired
    del owner
    gc.collect()
    assert ref() is None


def test_a_deadline_keeps_the_type_call_at_was_given(loop):
    # asyncio stores call_at's `when` as it is; aiohttp rounds deadlines up to whole seconds
    # and reads them back as ints.
    at_int = loop.call_at(10**6, print)
    at_float = loop.call_at(10.0**6, print)
    later = loop.call_later(1, print)
    assert type(at_int.when()) is int and at_int.when() == 10**6 == at_int._when
    assert "when=1000000 " in repr(at_int)
    assert type(at_float.when()) is float and "when=1000000.0 " in repr(at_float)
    assert type(later.when()) is float
    assert at_int == at_float and hash(at_int) == hash(at_float)
    for handle in (at_int, at_float, later):
        handle.cancel()


def test_a_patched_loop_time_moves_the_timers(loop):
    # asyncio's turn and call_later read the clock through self.time(); tests patch it.
    async def main():
        now = loop.time()
        fired = []
        with mock.patch.object(loop, "time") as patched:
            patched.return_value = now
            loop.call_at(now + 100, fired.append, "at")
            later = loop.call_later(50, fired.append, "later")
            assert later.when() == now + 50
            patched.return_value = now + 100
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert fired == ["later", "at"]
        assert "time" not in vars(loop)
        # The real clock is back.
        start = time.monotonic()
        await asyncio.sleep(0.01)
        assert 0.005 < time.monotonic() - start < 1

    loop.run_until_complete(main())


def test_a_subclass_time_is_the_loops_clock(loop):
    class Ahead(type(loop)):
        def time(self):
            return super().time() + 1000

    ahead = Ahead()
    try:
        fired = []
        ahead.call_at(time.monotonic() + 500, fired.append, "due")
        ahead.call_soon(ahead.call_soon, ahead.stop)
        ahead.run_forever()
        assert fired == ["due"], "500 s from now by time.monotonic() is past by the loop's clock"
    finally:
        ahead.close()


def test_a_handle_cancelled_after_debug_was_turned_on_keeps_its_repr(loop):
    loop.set_debug(False)  # off to begin with, even under PYTHONDEVMODE
    h = loop.call_soon(print, "x")
    assert h._source_traceback is None and h._repr is None
    loop.set_debug(True)
    h.cancel()
    assert h._repr == "<Handle cancelled print('x')>" == repr(h)
    assert h._source_traceback is None
    assert h._loop is loop
    run_turns(loop)


def test_a_handle_whose_description_fails_in_debug_mode_is_cancelled_all_the_same(loop):
    class Unprintable:
        def __call__(self):
            raise AssertionError("a cancelled callback ran")

        def __repr__(self):
            raise RuntimeError("no repr")

    loop.set_debug(True)
    h = loop.call_soon(Unprintable())
    t = loop.call_later(0, Unprintable())
    for handle in (h, t):
        with pytest.raises(RuntimeError, match="no repr"):
            handle.cancel()
        assert handle.cancelled()
    run_turns(loop, 2)
    loop.set_debug(False)


@pytest.mark.parametrize(
    "make", [lambda lp: lp.call_soon(print), lambda lp: lp.call_later(1, print)]
)
def test_a_handle_takes_no_more_memory_than_asyncios(make):
    import sys

    asyncio_loop, loop = asyncio.new_event_loop(), ferroloop.new_event_loop()
    try:
        assert sys.getsizeof(make(loop)) < sys.getsizeof(make(asyncio_loop))
    finally:
        asyncio_loop.close()
        loop.close()


def test_handles_support_weakrefs(loop):
    import weakref

    h = loop.call_soon(print)
    assert weakref.ref(h)() is h
    h.cancel()


def test_handle_held_after_the_loop_closed_is_collectable(loop):
    import gc
    import weakref

    class Owner:
        def cb(self):
            pass

    owner = Owner()
    owner.handle = loop.call_soon(owner.cb)
    owner.timer = loop.call_later(100, owner.cb)
    ref = weakref.ref(owner)
    loop.close()
    assert gc.is_tracked(owner.handle) and gc.is_tracked(owner.timer)
    del owner
    gc.collect()
    assert ref() is None


def test_cancelled_queued_handle_in_a_cycle_is_collectable(loop):
    import gc
    import weakref

    class Owner:
        def cb(self):
            pass

    owner = Owner()
    owner.timer = loop.call_later(100, owner.cb)
    owner.timer.cancel()
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None
    run_turns(loop)


def test_collections_while_many_callbacks_are_queued(loop):
    import gc

    seen = []

    class Payload:
        def __init__(self, i):
            self.i = i
            self.me = self  # a cycle the collector must leave alone while it is queued

        def __call__(self):
            seen.append(self.i)
            if self.i % 1000 == 0:
                gc.collect()

    for i in range(5000):
        loop.call_soon(Payload(i))
    gc.collect()
    run_turns(loop)
    assert seen == list(range(5000))


async def while_running(schedule, loop):
    """Calls `schedule(loop)` from the running loop and leaves what it queued there."""
    schedule(loop)


def test_a_handle_held_elsewhere_keeps_its_stopped_loop(loop_factory):
    import gc
    import weakref

    loop = loop_factory()
    held = []
    # The timer is queued while the loop runs and outlives the run, held by its owner.
    loop.run_until_complete(while_running(lambda lp: held.append(lp.call_later(100, print)), loop))
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    # As with asyncio's handle, the timer's reference to its loop keeps the loop alive.
    assert ref() is not None
    assert not ref().is_closed()
    held[0].cancel()
    assert held[0].cancelled()
    held.clear()
    collect_garbage()
    assert ref() is None


# The task below never runs: its coroutine is closed unstarted when the loop is collected.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.parametrize("debug", [False, True])
def test_dropped_unclosed_loop_with_queued_callbacks_is_collected(loop_factory, debug):
    import weakref

    loop = loop_factory()
    loop.set_debug(debug)  # debug mode: each handle also records where it was made

    async def pending():
        pass

    def schedule(loop):
        loop.call_soon(print)
        loop.call_later(100, print)
        loop.create_task(pending())

    # Once from a running loop (ferroloop untracks those handles), once from a stopped one.
    loop.run_until_complete(while_running(schedule, loop))
    schedule(loop)
    ref = weakref.ref(loop)
    del loop, schedule
    caught = collect_garbage()
    assert ref() is None
    assert any("unclosed event loop" in str(w.message) for w in caught)


# The task below never runs: its coroutine is closed unstarted when the loop is collected.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_context_values_of_queued_callbacks_do_not_keep_a_dropped_loop(loop_factory):
    import contextvars
    import weakref

    var = contextvars.ContextVar("holder")
    loop = loop_factory()

    class Holder:
        pass

    def schedule(loop):
        # Runs in a throwaway context: only the copies the callbacks take hold the value,
        # which points back at the loop (loop -> queue -> handle -> context -> value -> loop).
        holder = Holder()
        holder.loop = loop
        var.set(holder)
        for _ in range(100):
            loop.call_soon(print)
            loop.call_later(100, print)

    loop.run_until_complete(
        while_running(lambda lp: contextvars.copy_context().run(schedule, lp), loop)
    )
    ref = weakref.ref(loop)
    del loop
    collect_garbage()
    assert ref() is None


def test_a_token_may_outlive_the_callback_that_set_it(loop):
    import contextvars
    import gc

    var = contextvars.ContextVar("v", default=0)
    tokens = []

    def callback(i):
        tokens.append(var.set(i))  # the token holds the callback's context

    for i in range(100):
        loop.call_soon(callback, i)
    run_turns(loop)
    gc.collect()
    values = [token.var.get() for token in tokens]
    tokens.clear()  # the contexts go with the tokens
    gc.collect()
    assert values == [0] * 100


@pytest.mark.parametrize("debug", [False, True])
def test_a_queued_handle_lists_its_referents(loop, debug):
    import gc

    def callback(arg):
        pass

    loop.set_debug(debug)
    handle = loop.call_soon(callback, "arg")
    referents = gc.get_referents(handle)
    # asyncio's Handle lists its slots; ferroloop's lists the same objects, but holds a callback
    # that has arguments together with them, as one tuple `(callback, *args)`.
    calls = [r for r in referents if r is callback or r == (callback, "arg")]
    assert len(calls) == 1 and loop in referents
    if calls[0] is callback:
        assert ("arg",) in referents
    if debug:
        assert handle._source_traceback in referents
    # asyncio's handle holds its Context; ferroloop's holds the Context's variables (a HAMT
    # mapping) until someone asks for the Context: either way the collector sees them.
    held = [r for r in referents if type(r).__name__ in ("Context", "hamt")]
    assert len(held) == 1
    context = handle._context
    assert held[0] is context or held[0] in gc.get_referents(context)
    handle.cancel()
    run_turns(loop)


def test_contexts_handed_out_are_ordinary_tracked_objects(loop):
    import gc

    for _ in range(100):  # ferroloop's handles make their contexts late
        loop.call_soon(len, "")
    handle = loop.call_soon(print, "x")
    timer = loop.call_later(100, print)
    # `_context` on every version; `get_context()` from 3.12 on (ferroloop has it everywhere).
    contexts = [handle._context, timer._context]
    if hasattr(timer, "get_context"):
        contexts.append(timer.get_context())
        assert contexts[2] is contexts[1]
    assert all(gc.is_tracked(ctx) for ctx in contexts)
    assert contexts[0] is not contexts[1]
    timer.cancel()
    gc.collect()
    run_turns(loop)


def test_call_soon_argument_errors(loop):
    with pytest.raises(
        TypeError, match=r"call_soon\(\) missing 1 required positional argument: 'callback'"
    ):
        loop.call_soon()
    with pytest.raises(TypeError, match=r"call_soon\(\) got an unexpected keyword argument 'ctx'"):
        loop.call_soon(print, ctx=None)
    seen = []
    loop.call_soon(lambda *a: seen.append(a), 1, 2, 3, context=None)
    run_turns(loop)
    assert seen == [(1, 2, 3)]


# asyncio 3.14 locks a call_soon_threadsafe handle while its callback runs (_ThreadSafeHandle):
# another thread's cancel() or cancelled() waits for the callback to finish. Before, they return
# at once. Both loops must do what this Python's asyncio does.
LOCKS_THREADSAFE_HANDLES = hasattr(asyncio.events, "_ThreadSafeHandle")


@pytest.mark.parametrize("ask", ["cancel", "cancelled"])
def test_a_threadsafe_handle_asked_from_another_thread_mid_run(loop, ask):
    started, finished, published = threading.Event(), threading.Event(), threading.Event()
    own = []

    def callback():
        started.set()
        published.wait(10)
        own[0].cancel()  # its own thread: never waits
        time.sleep(0.3)  # lets go of the GIL
        finished.set()

    seen = []

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        own.append(handle)
        published.set()
        started.wait(10)
        getattr(handle, ask)()
        seen.append(finished.is_set())
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=other_thread)
    thread.start()
    loop.run_forever()
    thread.join()
    assert seen == [LOCKS_THREADSAFE_HANDLES]
