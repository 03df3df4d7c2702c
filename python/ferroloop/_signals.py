"""Signal handlers: `add_signal_handler` / `remove_signal_handler`, as on CPython's Unix loop.
Python's own C-level handler writes the signal number to a wake-up socket; the loop reads it
there and runs the registered callback as an ordinary callback of its next turn."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import warnings
from asyncio import coroutines

logger = logging.getLogger("asyncio")


def _noop_handler(signum, frame):
    """The Python-level handler: the real work is done by the loop when it reads the wake-up fd."""


class SignalHandlersMixin:
    """Needs `add_reader`, `remove_reader`, `_check_closed`, `_add_callback` from the loop."""

    def _init_signals(self) -> None:
        self._signal_handlers: dict[int, object] = {}
        self._signal_socks: tuple[socket.socket, socket.socket] | None = None

    def _check_signal(self, sig) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _signal_wakeup_fd(self) -> int:
        if self._signal_socks is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._signal_socks = (rsock, wsock)
            self.add_reader(rsock.fileno(), self._read_signals)
        return self._signal_socks[1].fileno()

    def _close_signal_socks(self) -> None:
        if self._signal_socks is not None:
            rsock, wsock = self._signal_socks
            self._signal_socks = None
            self.remove_reader(rsock.fileno())
            rsock.close()
            wsock.close()

    def _read_signals(self) -> None:
        rsock = self._signal_socks[0]
        while True:
            try:
                data = rsock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum:
                    self._handle_signal(signum)

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return  # the handler was removed since the signal arrived
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    def add_signal_handler(self, sig, callback, *args) -> None:
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: asyncio reports that as RuntimeError.
            signal.set_wakeup_fd(self._signal_wakeup_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        from ._ferroloop import Handle

        self._signal_handlers[sig] = Handle(callback, args, self, None)
        try:
            signal.signal(sig, _noop_handler)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig) -> bool:
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True

    def _remove_all_signal_handlers(self) -> None:
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            self._signal_handlers.clear()
