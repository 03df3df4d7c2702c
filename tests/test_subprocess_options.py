"""Subprocess options and errors (issue 4's list), on asyncio and ferroloop alike: the stdio kinds,
cwd/env/pass_fds/start_new_session, asyncio's validation errors, the transport's methods, and the
child watcher fallback."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import warnings

import pytest
from conftest import recorded_warnings

PY = sys.executable


def test_stdio_kinds(loop, tmp_path):
    async def main():
        out_file = open(tmp_path / "out.txt", "wb")  # noqa: SIM115 - closed below
        try:
            # stdout to a file object, stderr to STDOUT (the same file), stdin from DEVNULL.
            proc = await asyncio.create_subprocess_exec(
                PY,
                "-c",
                "import sys; print(repr(sys.stdin.read())); print('err', file=sys.stderr)",
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=subprocess.STDOUT,
            )
            await proc.wait()
        finally:
            out_file.close()
        # stdin from a raw fd, stdout as a PIPE.
        r, w = os.pipe()
        os.write(w, b"from an fd")
        os.close(w)
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; print(sys.stdin.read())", stdin=r, stdout=subprocess.PIPE
        )
        os.close(r)
        piped, _ = await proc.communicate()
        return (tmp_path / "out.txt").read_bytes(), piped

    file_out, piped = loop.run_until_complete(main())
    assert file_out.split() == [b"''", b"err"]
    assert piped == b"from an fd\n"


def test_cwd_env_pass_fds_and_new_session(loop, tmp_path):
    async def main():
        r, w = os.pipe()
        code = (
            "import os; print(os.getcwd()); print(os.environ['FERRO']);"
            f"os.write({w}, b'passed'); print(os.getsid(0) == os.getpid())"
        )
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            code,
            cwd=tmp_path,
            env={**os.environ, "FERRO": "loop"},
            pass_fds=(w,),
            start_new_session=True,
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        os.close(w)
        passed = os.read(r, 100)
        os.close(r)
        return out.decode().split(), passed

    lines, passed = loop.run_until_complete(main())
    assert lines == [str(tmp_path), "loop", "True"]
    assert passed == b"passed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
        ({"bufsize": 1}, "bufsize must be 0"),
    ],
)
def test_validation_errors(loop, kwargs, message):
    async def main():
        with pytest.raises(ValueError) as info:
            await asyncio.create_subprocess_exec(PY, "-c", "pass", **kwargs)
        return str(info.value)

    assert loop.run_until_complete(main()) == message


def test_transport_methods_and_returncodes(loop):
    async def main():
        transport, protocol = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            PY,
            "-c",
            "import time; time.sleep(30)",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        pid = transport.get_pid()
        before = transport.get_returncode()
        has_stdin = transport.get_pipe_transport(0) is not None
        no_stdout = transport.get_pipe_transport(1) is None
        transport.send_signal(signal.SIGTERM)
        await transport._wait()
        after = transport.get_returncode()
        transport.close()
        return pid > 0, before, has_stdin, no_stdout, after

    assert loop.run_until_complete(main()) == (True, None, True, True, -signal.SIGTERM)


def test_a_subprocess_warns_about_nothing(loop):
    # Python 3.14 deprecates asyncio.get_event_loop_policy (it warns when called), which
    # ferroloop reads to find an installed child watcher: it must use the private accessor there.
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "raise SystemExit(4)")
        return await proc.wait()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loop.run_until_complete(main()) == 4


def test_a_daemon_left_behind_does_not_hold_the_pipes(loop):
    # The child starts a daemon with its stdio sent elsewhere and exits, as `pg_ctl start` does:
    # the pipes reach their end then, unless a copy of them was left open in the child under
    # another fd (uvloop 0.23 leaves one, and communicate() waits for the daemon).
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            "sleep 60 </dev/null >/dev/null 2>&1 & echo $!",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = int(await proc.stdout.readline())
        try:
            return await asyncio.wait_for(proc.communicate(), 10), proc.returncode
        finally:
            os.kill(daemon, signal.SIGKILL)

    assert loop.run_until_complete(main()) == ((b"", b""), 0)


@pytest.mark.skipif(
    not hasattr(asyncio, "SafeChildWatcher") or sys.version_info >= (3, 14),
    reason="child watchers exist up to Python 3.13",
)
def test_an_installed_child_watcher_is_used(loop_factory):
    # A program that installs its own watcher gets it, on ferroloop as on asyncio.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        watcher = asyncio.SafeChildWatcher()
        loop = loop_factory()
        try:
            watcher.attach_loop(loop)
            policy.set_child_watcher(watcher)
            seen = []
            original = watcher.add_child_handler

            def spy(pid, callback, *args):
                seen.append(pid)
                return original(pid, callback, *args)

            watcher.add_child_handler = spy

            async def main():
                proc = await asyncio.create_subprocess_exec(PY, "-c", "raise SystemExit(3)")
                return proc.pid, await proc.wait()

            pid, code = loop.run_until_complete(main())
        finally:
            policy.set_child_watcher(None)
            watcher.close()
            loop.close()
    assert code == 3
    assert seen == [pid]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="policies keep no child watcher from 3.14")
def test_the_watcher_asyncio_made_for_itself_leaves_ferroloop_on_pidfds():
    # asyncio's policy makes its watcher on the first subprocess of asyncio's loop (from 3.12 a
    # PidfdChildWatcher); that is not the program's choice, so ferroloop keeps its own path.
    import ferroloop
    from ferroloop._transports import SubprocessTransport

    async def child():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        await proc.wait()
        return type(proc._transport)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().get_child_watcher()  # as asyncio's first subprocess does
    loop = ferroloop.new_event_loop()
    try:
        assert loop.run_until_complete(child()) is SubprocessTransport
    finally:
        loop.close()


def test_preexec_fn_umask_user_and_group(loop):
    # user, group and umask (Python 3.9+): the current ids are allowed without privileges.
    code = (
        "import os; print(os.environ.get('FERRO_PRE')); print(oct(os.umask(0)));"
        "print(os.getuid(), os.getgid())"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            code,
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.environ.__setitem__("FERRO_PRE", "ran"),
            umask=0o027,
            user=os.getuid(),
            group=os.getgid(),
        )
        out, _ = await proc.communicate()
        return out.decode().split("\n")[:3]

    assert loop.run_until_complete(main()) == ["ran", "0o27", f"{os.getuid()} {os.getgid()}"]


def test_a_child_left_running_when_its_loop_closes_is_finalized_quietly(loop_factory):
    # The transport of a child still running when the loop closes is collected later; closing
    # it then must not go through the closed loop (Python 3.14's close, gh-114177).
    if loop_factory is asyncio.SelectorEventLoop and sys.version_info < (3, 14):
        pytest.skip(
            "asyncio's own gh-114177, fixed in 3.14: 'Event loop is closed' from the finalizer "
            "(on 3.9-3.11 once the child exits, its watcher thread holding the transport till then)"
        )
    loop = loop_factory()

    async def start():
        return await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(30)", stdout=subprocess.PIPE
        )

    proc = loop.run_until_complete(start())
    pid = proc.pid
    loop.close()
    gc.collect()  # (earlier tests' garbage: only this transport's finalizer is watched below)
    unraisable = []
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with recorded_warnings() as caught:
            del proc
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
        # The transport's close() killed the child; with its loop closed, nothing waits for it,
        # but Popen's finalizer reaps it if the kill landed first (a loaded machine).
        try:
            reaped = os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            reaped = True
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert [hook.exc_value for hook in unraisable] == []
    # The loop watched the child on a pidfd, so nothing else held the transport: it was finalized.
    assert any("unclosed transport <" in str(w.message) for w in caught)
