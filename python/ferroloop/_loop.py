"""ferroloop's event loop: the native core (`_ferroloop.LoopCore`) plus its per-loop Python face.

Everything that runs per callback, timer or I/O event is native. What runs once per loop or per
call of a rare API lives here. Where the stdlib's own implementation of such a method is pure
bookkeeping over public loop methods (async generator shutdown, executors, exception handler
plumbing), the loop uses the stdlib's function itself, so messages and version-specific details
(3.9 to 3.14) are CPython's to the letter.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import warnings
import weakref
from asyncio import base_events, coroutines, events

from ._ferroloop import LoopCore
from ._signals import SignalHandlersMixin

__all__ = ("EventLoop",)

logger = logging.getLogger("asyncio")

_Base = base_events.BaseEventLoop


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


class EventLoop(LoopCore, SignalHandlersMixin, asyncio.AbstractEventLoop):
    """An asyncio event loop whose scheduling, timers and polling run in Rust."""

    def __init__(self) -> None:
        self._default_executor = None
        self._exception_handler = None
        self.slow_callback_duration = 0.1
        self._current_handle = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._executor_shutdown_called = False
        self._init_signals()
        self.set_debug(coroutines._is_debug_mode())

    def __repr__(self) -> str:
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def __del__(self, _warn=warnings.warn) -> None:
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # Running and stopping.

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_until_stopped()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._remove_all_signal_handlers()
        self._close_signal_socks()
        self._close_core()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def _check_closed(self) -> None:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

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

    # Name resolution: numeric addresses are answered at once, names go to the executor.

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        if _is_numeric_host(host) and _is_numeric_port(port) and not self._debug:
            return socket.getaddrinfo(
                host, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
        getaddr_func = self._getaddrinfo_debug if self._debug else socket.getaddrinfo
        return await self.run_in_executor(
            None, getaddr_func, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        if flags & numeric == numeric:
            return socket.getnameinfo(sockaddr, flags)
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    # Per-loop bookkeeping shared with the stdlib loop (see the module docstring).

    _check_running = _Base._check_running
    _check_callback = _Base._check_callback
    run_until_complete = _Base.run_until_complete
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    shutdown_asyncgens = _Base.shutdown_asyncgens
    shutdown_default_executor = _Base.shutdown_default_executor
    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    _getaddrinfo_debug = _Base._getaddrinfo_debug
    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler


for _name in ("_check_default_executor", "_do_shutdown"):
    # Helpers of the methods above that exist only in some Python versions.
    if hasattr(_Base, _name):
        setattr(EventLoop, _name, getattr(_Base, _name))
del _name
