"""ferroloop's event loop: the native core (`_ferroloop.LoopCore`) under asyncio's Unix loop.

Everything that runs per callback, timer or I/O readiness event is native: scheduling, the timer
heap, polling, one turn of the loop, `call_soon` and friends, `create_task`, the fd callbacks.
`EventLoop` places that core in front of CPython's own `_UnixSelectorEventLoop` in the method
resolution order, so what runs per connection or per call of a rarer API (address resolution,
`create_connection`/`create_server`, transports and protocols, `sock_*`, pipes, subprocesses,
signals, TLS, executors, async generators, exception handling) is CPython's code, with CPython's
semantics and messages for the Python version at hand. The stdlib's selector is replaced by the
native poller: `_add_reader` & co. are native, and `_selector` is a read-only view of it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import warnings
import weakref
from asyncio import base_events, coroutines, events, selector_events, streams, unix_events

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    ssl = None

from . import _task_calls  # noqa: F401  (teaches the native loop the C Task's calls)
from ._ferroloop import LoopCore, accept_connection, close_exit_gate
from ._tls import NATIVE as _NATIVE_TLS
from ._tls import SSLProtocol
from ._transports import (
    DatagramTransport,
    ReadPipeTransport,
    SocketTransport,
    SubprocessTransport,
    WritePipeTransport,
)

__all__ = ("EventLoop",)

logger = logging.getLogger("asyncio")


def _pidfds_work() -> bool:
    """Whether this kernel and Python can watch a child on a pidfd (Linux 5.3+, Python 3.9+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


_PIDFDS_WORK = _pidfds_work()

# Python 3.9-3.13 end a thread that asks for the GIL once the interpreter finalizes, with an
# unwind that the loop's native frames cannot pass (the process aborts). So from this atexit
# callback on, which runs before finalization, a loop of a thread other than the main one parks
# for good when its poll returns (src/core/exit_gate.rs). 3.14 parks such threads itself.
_PARK_AT_EXIT = sys.version_info < (3, 14)


def _close_exit_gate_at_exit() -> None:
    # Only when the interpreter exits, which stops the main thread (threading's shutdown) before
    # atexit's callbacks run: a program that runs them itself (atexit._run_exitfuncs) and goes
    # on keeps its loops.
    if not threading.main_thread().is_alive():
        close_exit_gate()


if _PARK_AT_EXIT:
    atexit.register(_close_exit_gate_at_exit)

# The child watchers asyncio's policy makes for itself on first use (Python 3.8-3.13; from 3.14
# the loop keeps its own and the policy none).
if sys.version_info >= (3, 14):
    _POLICY_WATCHERS = ()
elif sys.version_info >= (3, 12):  # PidfdChildWatcher where pidfds work
    _POLICY_WATCHERS = (unix_events.ThreadedChildWatcher, unix_events.PidfdChildWatcher)
else:
    _POLICY_WATCHERS = (unix_events.ThreadedChildWatcher,)

# Python 3.14 deprecates asyncio.get_event_loop_policy (calling it warns) and keeps the accessor
# under a private name, which asyncio's own code calls.
_get_policy = getattr(events, "_get_event_loop_policy", events.get_event_loop_policy)


def _refuses_owned_fds(method) -> bool:
    """Whether the stdlib's transport factory `method` first checks that no transport owns the
    socket's fd (newer Pythons do): ferroloop's factories then check too."""
    return "_ensure_fd_no_transport" in method.__code__.co_names


_SOCKET_FACTORIES_CHECK_FD = {
    name: _refuses_owned_fds(getattr(selector_events.BaseSelectorEventLoop, name))
    for name in ("_make_socket_transport", "_make_ssl_transport", "_make_datagram_transport")
}


def _is_numeric_host(host) -> bool:
    """True if resolving `host` needs no DNS: None (the wildcard) or an IP literal."""
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("idna")
        except UnicodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


def _is_numeric_port(port) -> bool:
    if port is None or isinstance(port, int):
        return True
    if isinstance(port, (str, bytes)):
        return port.isdigit()
    return False


class _ListeningSocket:
    """A server's listening socket as asyncio's `_accept_connection` gets it: the socket in
    everything (its attributes, its repr, what TransportSocket shows of it in an error report)
    but `accept()`, which on a plain `socket.socket` does what its `accept` does without making
    enums of the socket's family and type (two thousands-of-instructions property reads per
    connection), and on any other calls the socket's own (`accept_connection` in
    src/net/connection_setup.rs)."""

    __slots__ = ("_sock", "accept")

    def __init__(self, sock):
        self._sock = sock
        # A partial of the native function: no Python frame per accept.
        self.accept = functools.partial(accept_connection, sock)

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __repr__(self):
        return repr(self._sock)


class _SelectorView:
    """What asyncio's transports read from `loop._selector` (their reprs ask whether the loop
    polls an fd), answered from the native poller. Registration goes through the loop only."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj) -> selectors.SelectorKey:
        loop = self._loop()
        key = loop._fd_key(fileobj) if loop is not None else None
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return key

    def close(self) -> None:
        """Nothing to release: the poller belongs to the loop."""


class EventLoop(LoopCore, unix_events._UnixSelectorEventLoop):
    """An asyncio event loop whose scheduling, timers and polling run in Rust."""

    # Where asyncio's loop keeps its task factory, which some libraries read (to tell whether
    # theirs is installed) or assign; here it is the core's, which create_task uses.
    _task_factory = property(LoopCore.get_task_factory, LoopCore.set_task_factory)

    def __init__(self) -> None:
        # The state BaseEventLoop.__init__ and the selector loops set up, minus what lives in the
        # native core (ready queue, timer heap, poller, closed/stopping/debug flags).
        self._default_executor = None
        self._internal_fds = 0
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._exception_handler = None
        self.slow_callback_duration = 0.1
        self._current_handle = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._executor_shutdown_called = False
        self._selector = _SelectorView(self)
        self._transports = weakref.WeakValueDictionary()
        self._signal_handlers = {}
        # Python 3.13+: the sockets of create_unix_server(cleanup_socket=True), by inode, whose
        # files Server.close() removes.
        self._unix_server_sockets = {}
        # The self-pipe only carries signal numbers here (call_soon_threadsafe has the native
        # waker), so it is made with the first signal handler: a loop that watches no fd skips
        # the zero-timeout poll of a busy turn, and an fd of its own would prevent that.
        self._ssock = self._csock = None
        if sys.version_info >= (3, 14):
            # 3.14 moved the child watcher from the policy to the loop, which picks it as
            # asyncio's loop does; asyncio's subprocess path, taken where pidfds do not work
            # (_make_subprocess_transport), reads it here.
            self._watcher = (
                unix_events._PidfdChildWatcher()
                if _PIDFDS_WORK
                else unix_events._ThreadedChildWatcher()
            )
        self.set_debug(coroutines._is_debug_mode())
        # A subclass's own time() is where the turn must read the time.
        self._check_clock()

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        wakeup_fd = None
        in_main_thread = threading.current_thread() is threading.main_thread()
        try:
            wakeup_fd = self._install_signal_wakeup() if in_main_thread else None
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_until_stopped(_PARK_AT_EXIT and not in_main_thread)
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)
            if wakeup_fd is not None:
                self._remove_signal_wakeup(wakeup_fd)

    def _install_signal_wakeup(self) -> int | None:
        """In the main thread, while nobody else has one: the native poller's signal wakeup fd,
        so that a signal cannot slip in between the check for pending signals and the blocking
        poll (uvloop does the same). Returns the fd installed, or None."""
        fd = self._signal_wakeup_fd()
        try:
            previous = signal.set_wakeup_fd(fd)
        except ValueError:  # not the main interpreter
            return None
        if previous != -1:
            # Someone's own (asyncio's add_signal_handler self-pipe, which this loop watches).
            signal.set_wakeup_fd(previous)
            return None
        return fd

    @staticmethod
    def _remove_signal_wakeup(fd: int) -> None:
        current = signal.set_wakeup_fd(-1)
        if current != fd:  # replaced while running (add_signal_handler): leave it in place
            signal.set_wakeup_fd(current)

    # What close() calls of other modules, held by the class: close() also runs from
    # BaseEventLoop.__del__, which at interpreter exit can come after this module's globals were
    # cleared (a loop that the policy or a module of the program still held).
    _is_finalizing = staticmethod(sys.is_finalizing)
    _warn = staticmethod(warnings.warn)
    _logger = logger

    def close(self) -> None:
        # BaseSelectorEventLoop.close, BaseEventLoop.close and _UnixSelectorEventLoop.close, in
        # their order, with the native core in place of the ready queue, heap and selector.
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            self._logger.debug("Close %r", self)
        if self._ssock is not None:
            self._close_self_pipe()
        self._close_core()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        self._selector = None
        if not self._is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            self._warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            self._signal_handlers.clear()

    def add_signal_handler(self, sig, callback, *args) -> None:
        if self._ssock is None and not self.is_closed():
            self._make_self_pipe()
        super().add_signal_handler(sig, callback, *args)

    def _start_serving(self, protocol_factory, sock, *args, **kwargs):
        # asyncio's _accept_connection, which the listening socket's reader runs, accepts with
        # `sock.accept()`; a plain socket's goes native (_ListeningSocket). Its retry after
        # running out of fds calls this again with what it was given, already wrapped.
        if not isinstance(sock, _ListeningSocket):
            sock = _ListeningSocket(sock)
        return super()._start_serving(protocol_factory, sock, *args, **kwargs)

    # Stream and datagram sockets get transports whose per-packet work is native; TLS is
    # asyncio's SSLProtocol, also native from Python 3.11 on (see _tls.py), on top of the stream
    # transport.

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        if _SOCKET_FACTORIES_CHECK_FD["_make_socket_transport"]:
            self._ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        **timeouts,
    ):
        # timeouts: ssl_handshake_timeout, and ssl_shutdown_timeout from Python 3.11 on.
        if _SOCKET_FACTORIES_CHECK_FD["_make_ssl_transport"]:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    if _NATIVE_TLS:

        async def start_tls(
            self,
            transport,
            protocol,
            sslcontext,
            *,
            server_side=False,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
        ):
            """Upgrade transport to TLS: asyncio's `BaseEventLoop.start_tls` (3.11+), with the
            native protocol."""
            if ssl is None:
                raise RuntimeError("Python ssl module is not available")
            if not isinstance(sslcontext, ssl.SSLContext):
                raise TypeError(
                    f"sslcontext is expected to be an instance of ssl.SSLContext, "
                    f"got {sslcontext!r}"
                )
            if not getattr(transport, "_start_tls_compatible", False):
                raise TypeError(f"transport {transport!r} is not supported by start_tls()")
            waiter = self.create_future()
            ssl_protocol = SSLProtocol(
                self,
                protocol,
                sslcontext,
                waiter,
                server_side,
                server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                call_connection_made=False,
            )
            # Paused first, so that no record reaches the protocol before connection_made.
            transport.pause_reading()
            if server_side and isinstance(protocol, streams.StreamReaderProtocol):
                # The client's first records may already sit in the stream's buffer (sent right
                # behind the plain-text line that asked for TLS): they are the handshake's, not
                # the application's. asyncio moves them over from 3.14 on; before, the
                # handshake waited for them forever.
                reader = getattr(protocol, "_stream_reader", None)
                if reader is not None and reader._buffer:
                    ssl_protocol._incoming.write(reader._buffer)
                    reader._buffer.clear()
            transport.set_protocol(ssl_protocol)
            conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
            resume_cb = self.call_soon(transport.resume_reading)
            try:
                await waiter
            except BaseException:
                transport.close()
                conmade_cb.cancel()
                resume_cb.cancel()
                # The exception's traceback holds this frame, which would hold the failed
                # waiter and through it the exception: a cycle that kept the transport alive
                # until the next collection (asyncio breaks it the same way from 3.14).
                waiter = None
                raise
            return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if sock.family not in DatagramTransport.FAMILIES:
            # Other families' addresses (netlink, CAN...) are the socket module's to convert.
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        if _SOCKET_FACTORIES_CHECK_FD["_make_datagram_transport"]:
            self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    # Subprocesses: the loop watches each child's exit on a pidfd, like any other fd, instead of
    # the per-child thread of Python 3.11's default child watcher. Without pidfds, or when the
    # program installed another kind of child watcher (asyncio.set_child_watcher, Python 3.8-3.13),
    # asyncio's watcher path does it, as on CPython's loop. The watcher asyncio's policy creates
    # for itself on first use is not a choice the program made: pidfds replace it.

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        watcher = getattr(_get_policy(), "_watcher", None)
        if not _PIDFDS_WORK or (watcher is not None and type(watcher) not in _POLICY_WATCHERS):
            return await super()._make_subprocess_transport(
                protocol, args, shell, stdin, stdout, stderr, bufsize, extra=extra, **kwargs
            )
        waiter = self.create_future()
        transp = SubprocessTransport(
            self,
            protocol,
            args,
            shell,
            stdin,
            stdout,
            stderr,
            bufsize,
            waiter=waiter,
            extra=extra,
            **kwargs,
        )
        self._watch_child_exit(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child_exit(self, pid: int, transp) -> None:
        pidfd = os.pidfd_open(pid)
        self._add_reader(pidfd, self._child_exited, pidfd, pid, transp)

    def _child_exited(self, pidfd: int, pid: int, transp) -> None:
        self._remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # Reaped elsewhere (a waitpid() outside asyncio): asyncio reports 255 then.
            returncode = 255
            logger.warning(
                "child process pid %d exit status already read:  will report returncode 255", pid
            )
        else:
            returncode = os.waitstatus_to_exitcode(status)
        self._child_watcher_callback(pid, returncode, transp)

    def _run_handle_debug(self, handle) -> None:
        """Runs one callback in debug mode: tracked as the current handle, timed, logged if slow."""
        self._current_handle = handle
        try:
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                logger.warning(
                    "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
                )
        finally:
            self._current_handle = None
            # A frame object can outlive this call: a coroutine's frame that ends while this
            # frame calls it keeps it as f_back (a failed task's traceback does). Holding the
            # handle, it would keep the task alive, and "Task exception was never retrieved"
            # waiting for the garbage collector; asyncio's Handle._run drops `self` for this.
            handle = None

    def _ensure_fd_no_transport(self, fd):
        # asyncio's check, which add_reader, remove_reader and the sock_* calls make on every
        # call, but reading the weak dictionary's own dict: its __getitem__ and get() are Python
        # code, and a miss raised and caught a KeyError inside (389 ns a call, 82 now).
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                # This code matches selectors._fileobj_to_fd function.
                raise ValueError(f"Invalid file object: {fd!r}") from None
        ref = self._transports.data.get(fileno)
        transport = None if ref is None else ref()
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # The socket calls that run per message: asyncio's own (the same on every Python that has
    # them, 3.9-3.14), but for their wait, which is native (src/event_loop/sock_waits.rs) and
    # names the socket rather than its number. Such a wait is watched edge-triggered (the call
    # tried the socket first) and stays registered when it ends, so the next wait on the same
    # socket makes no system call ("The sock_* calls' waits" in docs/design.md).

    def _sock_retry(self, sock, reader, method, *args):
        """The future that `sock.<method>(*args)`, retried whenever `sock` is ready, completes."""
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        return self._sock_wait(sock, fd, reader, method, args)

    async def sock_recv(self, sock, n):
        data = self._sock_try(sock, "recv", n)
        if data is None:
            data = await self._sock_retry(sock, True, "recv", n)
        return data

    async def sock_recv_into(self, sock, buf):
        nbytes = self._sock_try(sock, "recv_into", buf)
        if nbytes is None:
            nbytes = await self._sock_retry(sock, True, "recv_into", buf)
        return nbytes

    async def sock_sendall(self, sock, data):
        n = self._sock_try(sock, "send", data) or 0
        if n == len(data):
            return
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        return await self._sock_sendall_wait(sock, fd, memoryview(data), n)

    if sys.version_info >= (3, 11):  # the datagram calls are new in 3.11

        async def sock_recvfrom(self, sock, bufsize):
            result = self._sock_try(sock, "recvfrom", bufsize)
            if result is None:
                result = await self._sock_retry(sock, True, "recvfrom", bufsize)
            return result

        async def sock_recvfrom_into(self, sock, buf, nbytes=0):
            if not nbytes:
                nbytes = len(buf)
            result = self._sock_try(sock, "recvfrom_into", buf, nbytes)
            if result is None:
                result = await self._sock_retry(sock, True, "recvfrom_into", buf, nbytes)
            return result

        async def sock_sendto(self, sock, data, address):
            sent = self._sock_try(sock, "sendto", data, address)
            if sent is None:
                sent = await self._sock_retry(sock, False, "sendto", data, 0, address)
            return sent

        sock_recvfrom.__doc__ = selector_events.BaseSelectorEventLoop.sock_recvfrom.__doc__
        sock_recvfrom_into.__doc__ = (
            selector_events.BaseSelectorEventLoop.sock_recvfrom_into.__doc__
        )
        sock_sendto.__doc__ = selector_events.BaseSelectorEventLoop.sock_sendto.__doc__

    sock_recv.__doc__ = selector_events.BaseSelectorEventLoop.sock_recv.__doc__
    sock_recv_into.__doc__ = selector_events.BaseSelectorEventLoop.sock_recv_into.__doc__
    sock_sendall.__doc__ = selector_events.BaseSelectorEventLoop.sock_sendall.__doc__

    # Name resolution: numeric addresses are answered at once, names go to the executor.

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        if _is_numeric_host(host) and _is_numeric_port(port) and not self._debug:
            return socket.getaddrinfo(
                host, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        if flags & numeric == numeric:
            return socket.getnameinfo(sockaddr, flags)
        return await super().getnameinfo(sockaddr, flags)
