"""Which modules of `test.test_asyncio` run, and how each is bound to ferroloop.

Two kinds of binding:
- mixin modules define their loop tests in mixins that the suite binds to its own selector loops by
  subclassing; here the same mixins are bound to ferroloop the same way, and the module's own
  loop-specific classes (subclasses of those mixins) are left out;
- policy modules get their loop from `asyncio.new_event_loop()`, `asyncio.run()` or
  `IsolatedAsyncioTestCase`; they run as they are, with ferroloop's policy as the default policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Binding:
    # Names of mixin classes in the module, bound together in one class per entry; "A|B" names the
    # first of the two that the module has (a mixin renamed or dropped in a later Python).
    mixins: tuple[str, ...]
    # The TestCase base: "test_utils.TestCase" or "unittest.TestCase".
    base: str
    # The method the mixin calls to make its loop.
    factory: str
    # The mixin expects setUp to have made self.loop (SubprocessMixin) rather than asking for one.
    setup_loop_in_setup: bool = False


@dataclass(frozen=True)
class Module:
    name: str
    bindings: tuple[Binding, ...] = field(default_factory=tuple)


MODULES = [
    Module(
        "test_events",
        (
            Binding(
                # 3.14 dropped the Unix mixin, which only set up a child watcher.
                ("UnixEventLoopTestsMixin|EventLoopTestsMixin", "SubprocessTestsMixin"),
                "test_utils.TestCase",
                "create_event_loop",
            ),
        ),
    ),
    Module(
        "test_sock_lowlevel",
        (Binding(("BaseSockTestsMixin",), "test_utils.TestCase", "create_event_loop"),),
    ),
    Module(
        "test_sendfile",
        (Binding(("SendfileTestsBase",), "test_utils.TestCase", "create_event_loop"),),
    ),
    Module("test_server", (Binding(("BaseStartServer",), "unittest.TestCase", "new_loop"),)),
    Module(
        "test_buffered_proto",
        (Binding(("BaseTestBufferedProtocol",), "unittest.TestCase", "new_loop"),),
    ),
    Module("test_sslproto", (Binding(("BaseStartTLS",), "unittest.TestCase", "new_loop"),)),
    Module(
        "test_subprocess",
        (
            Binding(
                ("SubprocessMixin",),
                "test_utils.TestCase",
                "create_event_loop",
                setup_loop_in_setup=True,
            ),
        ),
    ),
    Module("test_streams"),
    Module("test_ssl"),
    Module("test_locks"),
    Module("test_queues"),
    Module("test_taskgroups"),
    Module("test_timeouts"),
    Module("test_waitfor"),
    Module("test_threads"),
    Module("test_runners"),
    Module("test_tasks"),
    Module("test_futures"),
    Module("test_futures2"),
    Module("test_context"),
    Module("test_pep492"),
]

BY_NAME = {m.name: m for m in MODULES}
