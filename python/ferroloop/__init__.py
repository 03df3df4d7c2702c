"""ferroloop: Python's asyncio event loop, written in Rust.

Pick it by any of the usual doors::

    ferroloop.run(main())
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # Python 3.12+
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    ferroloop.install()
    python -m ferroloop app.py
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from ._ferroloop import Handle, TimerHandle, __version__
from ._loop import EventLoop

__all__ = (
    "EventLoop",
    "EventLoopPolicy",
    "Handle",
    "TimerHandle",
    "__version__",
    "install",
    "new_event_loop",
    "run",
)

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new ferroloop event loop."""
    return EventLoop()


# Python 3.14 deprecates the public policy names (policies go away in 3.16) and keeps the classes
# under underscore names; use those where they exist so importing ferroloop warns about nothing.
if TYPE_CHECKING:
    from asyncio import DefaultEventLoopPolicy as _DefaultPolicy
else:
    _DefaultPolicy = getattr(asyncio.unix_events, "_DefaultEventLoopPolicy", None) or (
        asyncio.DefaultEventLoopPolicy
    )
_set_policy = getattr(asyncio.events, "_set_event_loop_policy", asyncio.set_event_loop_policy)


class EventLoopPolicy(_DefaultPolicy):
    """An event loop policy whose loops are ferroloop loops."""

    def _loop_factory(self) -> EventLoop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Makes ferroloop the loop of every later `asyncio.new_event_loop()` and `asyncio.run()`."""
    _set_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """`asyncio.run` on a ferroloop loop: same contract, same clean-up, same Ctrl-C handling."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    from ._runner_legacy import run as legacy_run

    return legacy_run(main, debug=debug)
