"""run_until_complete, run_forever re-entrancy, the entry points, executors, async generators,
name resolution and Ctrl-C."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref

import ferroloop
import pytest


def test_run_until_complete_results_and_errors(loop):
    async def ok():
        await asyncio.sleep(0)
        return "done"

    async def bad():
        raise ValueError("nope")

    assert loop.run_until_complete(ok()) == "done"
    with pytest.raises(ValueError, match="nope"):
        loop.run_until_complete(bad())
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="^Event loop stopped before Future completed.$"):
        loop.run_until_complete(fut)


def test_running_twice_is_refused(loop, loop_factory):
    errors = []
    other = loop_factory()

    async def nested():
        coro = asyncio.sleep(0)
        for target in (loop, other):
            try:
                target.run_until_complete(coro)
            except RuntimeError as e:
                errors.append(str(e))
        coro.close()

    loop.run_until_complete(nested())
    other.close()
    assert errors == [
        "This event loop is already running",
        "Cannot run the event loop while another loop is running",
    ]


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="_run_forever_setup and _run_forever_cleanup are new in 3.13"
)
def test_a_host_loop_can_drive_it_turn_by_turn(loop):
    # Guest-mode integrations (another framework's loop driving asyncio's) call these three.
    async def main():
        await asyncio.sleep(0.01)
        assert asyncio.get_running_loop() is loop
        return await asyncio.create_task(asyncio.sleep(0, "done"))

    task = loop.create_task(main())
    loop._run_forever_setup()
    try:
        assert loop.is_running()
        while not task.done():
            loop._run_once()
    finally:
        loop._run_forever_cleanup()
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    assert task.result() == "done"


def test_is_running_and_running_loop(loop):
    async def probe():
        return loop.is_running(), asyncio.get_running_loop() is loop

    assert loop.run_until_complete(probe()) == (True, True)
    assert not loop.is_running()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_in_executor_and_default_executor(loop):
    main_thread = threading.get_ident()

    async def main():
        tid = await loop.run_in_executor(None, threading.get_ident)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            doubled = await loop.run_in_executor(pool, lambda x: 2 * x, 21)
        await loop.shutdown_default_executor()
        return tid, doubled

    tid, doubled = loop.run_until_complete(main())
    assert tid != main_thread and doubled == 42
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_until_complete(loop.run_in_executor(None, print))


def test_set_default_executor(loop):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(pool)
    assert loop.run_until_complete(loop.run_in_executor(None, lambda: 5)) == 5
    loop.close()
    assert pool._shutdown


def test_shutdown_asyncgens(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append("closed")

    async def main():
        gen = agen()
        assert await gen.__anext__() == 1
        return gen

    gen = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == ["closed"]
    del gen


async def _counter():
    yield 1
    yield 2


def test_a_started_async_generator_is_kept_weakly_until_collected(loop):
    async def main():
        first, second = _counter(), _counter()
        await first.__anext__()
        await second.__anext__()
        assert set(loop._asyncgens) == {first, second}
        del first
        assert list(loop._asyncgens) == [second]
        await second.aclose()
        # The first one's finalizer queued its aclose(): a turn makes it a task, one runs it.
        for _ in range(2):
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_a_generator_started_after_shutdown_asyncgens_is_warned_about_and_kept(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert loop._asyncgens_shutdown_called is True

    async def main():
        gen = _counter()
        with pytest.warns(ResourceWarning, match="was scheduled after loop.shutdown_asyncgens"):
            await gen.__anext__()
        assert list(loop._asyncgens) == [gen]
        await gen.aclose()

    loop.run_until_complete(main())


def test_a_replaced_asyncgens_is_where_started_generators_are_kept(loop):
    # asyncio's hook adds to whatever `_asyncgens` names when the generator starts.
    async def main():
        first = _counter()
        await first.__anext__()
        loop._asyncgens = weakref.WeakSet()
        second = _counter()
        await second.__anext__()
        assert list(loop._asyncgens) == [second]
        loop._asyncgens = kept = set()
        third = _counter()
        await third.__anext__()
        assert kept == {third}
        for gen in (first, second, third):
            await gen.aclose()

    loop.run_until_complete(main())


@pytest.mark.skipif(
    not hasattr(weakref.WeakSet(), "_pending_removals"),
    reason="this Python's WeakSet iterates over a copy: no removal waits for an iteration (3.14+)",
)
def test_a_removal_waiting_for_an_iteration_is_made_before_the_next_generator_is_kept(loop):
    async def main():
        gens = [_counter(), _counter()]
        for gen in gens:
            await gen.__anext__()
        del gen
        iterating = iter(loop._asyncgens)
        held = next(iterating)
        gens.remove(held)
        assert [n async for n in gens[0]] == [2]  # finished: no finalizer hook when it dies
        gens.clear()  # it dies while the set is iterated, so its removal waits
        assert loop._asyncgens._pending_removals
        third = _counter()
        await third.__anext__()
        assert not loop._asyncgens._pending_removals
        del iterating
        assert set(loop._asyncgens) == {held, third}
        await held.aclose()
        await third.aclose()

    loop.run_until_complete(main())


def test_an_async_generator_started_after_shutdown_asyncgens_warns(loop):
    async def main():
        await loop.shutdown_asyncgens()
        late = _counter()
        with pytest.warns(ResourceWarning) as caught:
            await late.__anext__()
        assert str(caught[0].message) == (
            f"asynchronous generator {late!r} was scheduled after loop.shutdown_asyncgens() call"
        )
        assert caught[0].source is loop
        assert list(loop._asyncgens) == [late]
        await late.aclose()

    loop.run_until_complete(main())


def test_the_firstiter_hook_adds_to_a_replaced_asyncgens_set(loop):
    loop._asyncgens = set()

    async def main():
        gen = _counter()
        await gen.__anext__()
        assert loop._asyncgens == {gen}
        await gen.aclose()

    loop.run_until_complete(main())


def test_the_firstiter_hook_follows_a_weakset_put_in_place_of_the_first(loop):
    # ferroloop reads a WeakSet's parts once: a new one in `_asyncgens` must be read again.
    async def main():
        first_set = loop._asyncgens
        first = _counter()
        await first.__anext__()
        loop._asyncgens = weakref.WeakSet()
        second = _counter()
        await second.__anext__()
        assert set(first_set) == {first}
        assert set(loop._asyncgens) == {second}
        await first.aclose()
        await second.aclose()

    loop.run_until_complete(main())


def test_getaddrinfo_and_getnameinfo(loop):
    async def main():
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        v6 = await loop.getaddrinfo("::1", "443", type=socket.SOCK_STREAM)
        wildcard = await loop.getaddrinfo(None, 0, family=socket.AF_INET, flags=socket.AI_PASSIVE)
        names = await loop.getnameinfo(
            ("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        )
        return infos, v6, wildcard, names

    infos, v6, wildcard, names = loop.run_until_complete(main())
    assert infos == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert v6 == socket.getaddrinfo("::1", "443", type=socket.SOCK_STREAM)
    assert wildcard[0][4] == ("0.0.0.0", 0)
    assert names == ("127.0.0.1", "80")


def test_numeric_getaddrinfo_needs_no_thread():
    loop = ferroloop.new_event_loop()
    # Debug mode (PYTHONDEVMODE turns it on) resolves in the executor, as asyncio's does, to log.
    loop.set_debug(False)
    try:
        loop.run_until_complete(loop.getaddrinfo("10.1.2.3", 8080))
        loop.run_until_complete(loop.getaddrinfo("fe80::1", None))
        assert loop._default_executor is None
        loop.run_until_complete(loop.getaddrinfo("localhost", 80))
        assert loop._default_executor is not None
    finally:
        loop.close()


def test_ferroloop_run():
    async def main():
        loop = asyncio.get_running_loop()
        leftover = asyncio.create_task(asyncio.sleep(100))
        return type(loop), leftover

    loop_type, leftover = ferroloop.run(main())
    assert loop_type is ferroloop.EventLoop
    assert leftover.cancelled()
    # Refused as asyncio.run refuses it on this Python (3.14 takes any awaitable, and words it
    # otherwise).
    with pytest.raises((TypeError, ValueError)) as ours:
        ferroloop.run(42)
    with pytest.raises((TypeError, ValueError)) as theirs:
        asyncio.run(42)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_ferroloop_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=ferroloop.new_event_loop) is ferroloop.EventLoop


# asyncio's own policy functions warn from 3.14 on; ferroloop.install() must not.
@pytest.mark.filterwarnings(
    "ignore:'asyncio.(get|set)_event_loop_policy' is deprecated:DeprecationWarning"
)
def test_policy_and_install():
    old = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
        loop = asyncio.new_event_loop()
        assert isinstance(loop, ferroloop.EventLoop)
        loop.close()
        asyncio.set_event_loop_policy(None)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ferroloop.install()

        async def main():
            return type(asyncio.get_running_loop())

        assert asyncio.run(main()) is ferroloop.EventLoop
    finally:
        asyncio.set_event_loop_policy(old)


@pytest.mark.parametrize("policy", ["asyncio.DefaultEventLoopPolicy", "ferroloop.EventLoopPolicy"])
def test_a_loop_left_open_at_exit_is_closed_quietly(policy):
    # The policy holds the loop to the end, and it is collected while the interpreter clears the
    # modules' globals: closing it then must not need them.
    program = textwrap.dedent(
        f"""
        import asyncio, warnings
        import ferroloop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.14 deprecates policies
            asyncio.set_event_loop_policy({policy}())
        loop = asyncio.new_event_loop()
        loop.set_debug(True)  # (its close() logs)
        asyncio.set_event_loop(loop)
        del loop
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stderr) == (0, "")


def test_close_lets_go_of_the_loops_own_fds_at_once(loop_factory):
    # asyncio's close() closes its selector and self-pipe; the loop object may live on (a test
    # framework's reference, a traceback), and a process that makes many loops must not run out.
    def open_fds():
        return sorted(os.listdir("/proc/self/fd"))

    before = open_fds()
    loop = loop_factory()
    r, w = os.pipe()
    loop.add_reader(r, print)
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.run_until_complete(asyncio.sleep(0))  # (in the main thread: a signal wakeup fd too)
    loop.close()
    os.close(r)
    os.close(w)
    assert open_fds() == before
    assert loop.is_closed()


def test_is_an_abstract_event_loop():
    loop = ferroloop.new_event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.close()


# What `python -m ferroloop` must run as `python` runs it, from the directory above the script's
# (the script imports a module beside it, and shows what it sees of itself), a script that fails,
# one that does not compile, one that is not there, and modules by name, from their directory.
DASH_M_CASES = {
    "script": (".", ["app/app.py", "a", "b"]),
    "uncaught exception": (".", ["app/fails.py"]),
    "syntax error": (".", ["app/broken.py"]),
    "no such file": (".", ["app/missing.py"]),
    "module": ("app", ["-m", "app", "c"]),
    "module that fails": ("app", ["-m", "fails"]),
    "no such module": ("app", ["-m", "missing"]),
}


@pytest.mark.parametrize("case", sorted(DASH_M_CASES))
def test_python_dash_m_runs_a_program_as_python_does(tmp_path, case):
    app = tmp_path / "app"
    app.mkdir()
    (app / "beside.py").write_text("NAME = 'beside'\n")
    (app / "app.py").write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            import beside
            async def main():
                return type(asyncio.get_running_loop()).__name__
            loop = asyncio.run(main())
            print(__name__, sys.argv, sys.path[0], __file__, os.path.isabs(__file__), beside.NAME)
            print(loop, file=sys.stderr)
            """
        )
    )
    (app / "fails.py").write_text("def f():\n    raise ValueError('no')\nf()\n")
    (app / "broken.py").write_text("def (\n")
    cwd, args = DASH_M_CASES[case]

    def run(*prefix):
        return subprocess.run(
            [sys.executable, *prefix, *args],
            cwd=tmp_path / cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain, ferro = run(), run("-m", "ferroloop")
    assert (ferro.returncode, ferro.stdout) == (plain.returncode, plain.stdout)
    if case in ("script", "module"):
        assert plain.stdout.split()[-1] == "beside"
        assert (plain.stderr, ferro.stderr) == ("_UnixSelectorEventLoop\n", "EventLoop\n")
    else:
        assert plain.returncode != 0
        assert ferro.stderr == plain.stderr


# argv: the loop, then "once" (the main task lets its cancellation through) or "twice" (it
# ignores the first one).
CTRL_C_PROGRAM = textwrap.dedent(
    """
    import asyncio, signal, sys
    import ferroloop

    # What Python sets up when started from a terminal: a background job (`cmd &` in a
    # non-interactive shell) starts with SIGINT ignored, which Python leaves as it is, and then
    # Ctrl-C does nothing on either loop.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    async def main():
        try:
            # Said from the next turn, once this task waits: before 3.11 asyncio.run takes a
            # Ctrl-C as a KeyboardInterrupt wherever it lands, and one inside this step would
            # end the task instead of leaving it to be cancelled.
            asyncio.get_running_loop().call_soon(lambda: print("ready", flush=True))
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            print("main task cancelled", flush=True)
            if sys.argv[2] == "once":
                raise
            await asyncio.sleep(30)

    try:
        if sys.argv[1] == "ferroloop":
            ferroloop.run(main())
        else:
            asyncio.run(main())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    """
)


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_ctrl_c_cancels_the_main_task(loop_name):
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_PROGRAM, loop_name, "once"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out.splitlines() == ["main task cancelled", "KeyboardInterrupt"]
    assert proc.returncode == 0


def test_forked_child_cannot_run_or_disturb_the_parents_loop():
    # The epoll instance and eventfd are shared with a forked child: ferroloop refuses to run an
    # inherited loop in the child, and removing its fds there leaves the parent's watch set alone.
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    seen = []
    loop.add_reader(a, lambda: (seen.append(a.recv(10)), loop.stop()))
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            coro = asyncio.sleep(0)
            try:
                loop.run_until_complete(coro)
            except RuntimeError as e:
                code = 0 if "before fork()" in str(e) else 2
            coro.close()
            loop.remove_reader(a)
            loop.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    guard = loop.call_later(10, loop.stop)
    b.send(b"x")
    loop.run_forever()
    guard.cancel()
    loop.close()
    a.close()
    b.close()
    assert seen == [b"x"]


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_a_second_ctrl_c_interrupts(loop_name):
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_PROGRAM, loop_name, "twice"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "main task cancelled"
    # Give the child time to block in its poll again: a signal that lands between asyncio's last
    # check for pending signals and its blocking select is only handled when the select returns
    # (1 run in 60 here; ferroloop closes that window with a wakeup fd, see test_signals.py).
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out.splitlines() == ["KeyboardInterrupt"]
    assert proc.returncode == 0


def test_a_subinterpreter_gets_an_import_error_and_asyncio_still_runs_there():
    # The README's "Not in subinterpreters": PyO3 refuses to load the native module there.
    interpreters = pytest.importorskip(
        "concurrent.interpreters", reason="concurrent.interpreters is new in Python 3.14"
    )
    interp = interpreters.create()
    try:
        interp.exec("import asyncio; assert asyncio.run(asyncio.sleep(0, 'ran')) == 'ran'")
        with pytest.raises(interpreters.ExecutionFailed) as failed:
            interp.exec("import ferroloop")
    finally:
        interp.close()
    assert failed.value.excinfo.type.__name__ == "ImportError"
    assert "does not support loading in subinterpreters" in failed.value.excinfo.msg


def exits_quietly(program: str, times: int) -> None:
    """Runs `program` `times` times in Python's development mode, whose slower finalization
    leaves a daemon thread the time to ask for the GIL during it, and checks each run ends
    quietly, having printed "exiting"."""
    env = {**os.environ, "PYTHONDEVMODE": "1"}
    for _ in range(times):
        out = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=env
        )
        assert (out.returncode, out.stdout, out.stderr) == (0, "exiting\n", "")


NEW_LOOP = """
import asyncio, atexit, threading, time
import ferroloop
new_loop = {{"asyncio": asyncio.new_event_loop, "ferroloop": ferroloop.new_event_loop}}["{}"]
"""

# A loop in a daemon thread, waking every millisecond, while the main thread exits 0.1 s later.
TICKING_DAEMON_LOOP = textwrap.dedent(
    """
    def serve():
        loop = new_loop()
        async def tick():
            while True:
                await asyncio.sleep(0.001)
        loop.run_until_complete(tick())
    threading.Thread(target=serve, daemon=True).start()
    time.sleep(0.1)
    """
)


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_a_loop_running_in_a_daemon_thread_at_exit_ends_quietly(loop_name):
    # The interpreter exits while a daemon thread's loop waits in its poll with the GIL let go:
    # the thread must not take the GIL back into a finalizing interpreter. Python 3.9-3.13 end
    # such a thread with an unwind that the loop's native frames cannot pass (an abort; 1 exit
    # in 10 on 3.11 and 1 in 6 on 3.12 before ferroloop parked them, src/core/exit_gate.rs).
    program = NEW_LOOP.format(loop_name) + TICKING_DAEMON_LOOP + 'print("exiting")\n'
    exits_quietly(program, 20)


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_a_loop_running_callbacks_in_a_daemon_thread_at_exit_ends_quietly(loop_name):
    # The daemon thread's loop is in a callback that lets go of the GIL and takes it back (a
    # sleep) whenever the interpreter exits: the exit waits for it to get to its poll.
    program = NEW_LOOP.format(loop_name) + textwrap.dedent(
        """
        def serve():
            loop = new_loop()
            def busy():
                time.sleep(0.005)
                loop.call_soon(busy)
            loop.call_soon(busy)
            loop.run_forever()
        threading.Thread(target=serve, daemon=True).start()
        time.sleep(0.1)
        print("exiting")
        """
    )
    exits_quietly(program, 10)


@pytest.mark.skipif(
    sys.version_info[:2] == (3, 12),
    reason="Python 3.12 starts no thread from an atexit callback (RuntimeError: can't create "
    "new thread at interpreter shutdown)",
)
@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_an_exit_callback_can_run_a_loop_in_a_thread_it_joins(loop_name):
    # Registered before ferroloop was imported, the callback runs after ferroloop's own (atexit
    # calls the last registered first), which parks loops of other threads: not the loop of a
    # thread started after it, which would hang the exit. A daemon thread's loop is running too.
    program = (
        textwrap.dedent(
            """
        import atexit, threading
        def at_exit():
            done = []
            async def work():
                await asyncio.sleep(0.01)
                done.append(True)
            def run():
                loop = new_loop()
                loop.run_until_complete(work())
                loop.close()
            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
            assert done == [True]
            print("exiting")
        atexit.register(at_exit)
        """
        )
        + NEW_LOOP.format(loop_name)
        + TICKING_DAEMON_LOOP
    )
    exits_quietly(program, 5)


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_exit_callbacks_run_by_the_program_itself_leave_loops_running(loop_name):
    # atexit._run_exitfuncs() runs ferroloop's exit callback too, but the program goes on: a
    # loop of another thread must go on serving (it would park when the interpreter exits).
    program = NEW_LOOP.format(loop_name) + textwrap.dedent(
        """
        loop = new_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        async def answer():
            await asyncio.sleep(0.01)
            return 42
        assert asyncio.run_coroutine_threadsafe(answer(), loop).result(10) == 42
        atexit._run_exitfuncs()
        # (the call's wake-up ends the loop's poll, where a closed exit gate would park it)
        assert asyncio.run_coroutine_threadsafe(answer(), loop).result(10) == 42
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        print("exiting")
        """
    )
    exits_quietly(program, 1)


def test_a_forked_child_does_not_wait_at_exit_for_the_parents_loop_threads():
    # ferroloop's own: its exit callback waits for loops of other threads to get to their
    # poll. A child forked while such a loop ran a callback has no such thread to wait for.
    program = textwrap.dedent(
        """
        import os, threading, warnings
        import ferroloop
        from ferroloop._ferroloop import close_exit_gate
        in_callback, release = threading.Event(), threading.Event()
        def serve():
            loop = ferroloop.new_event_loop()
            def block():
                in_callback.set()
                release.wait()
            loop.call_soon(block)
            loop.run_forever()
        threading.Thread(target=serve, daemon=True).start()
        in_callback.wait()
        with warnings.catch_warnings():  # 3.12+: forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os._exit(0 if close_exit_gate() else 1)
        release.set()
        _, status = os.waitpid(pid, 0)
        print("exiting" if status == 0 else f"the child waited: {status}")
        """
    )
    exits_quietly(program, 1)
