"""Where a measured server and its load client run.

A row whose load comes from a client process of its own has two steady speeds on a 2-core VM, 2-3x
apart, and an unpinned run gets whichever layout the scheduler picked for it. With the server and
its client on one core, the row measures the CPU that each message costs the two of them. With
each on a core of its own, it measures how fast each side wakes the other: a wake-up across cores
costs far more here than a switch between processes on one core. Such rows are measured in both
placements, pinned, and named by them.
"""

from __future__ import annotations

import os

# Placement name: (the server's CPUs, the client's CPUs).
PLACEMENTS = {"one core": ({0}, {0}), "two cores": ({0}, {1})}

_client_cpus: set[int] | None = None


def row_name(workload: str, placement: str) -> str:
    return f"{workload} [{placement}]"


def pin(placement: str) -> None:
    """Pins this process, the server, and sets where the clients it starts will run."""
    global _client_cpus
    server, client = PLACEMENTS[placement]
    missing = (server | client) - os.sched_getaffinity(0)
    if missing:
        raise SystemExit(f"placement {placement!r} needs CPUs {sorted(missing)}, not available")
    os.sched_setaffinity(0, server)
    _client_cpus = client


def on_cpus(cpus: set[int] | None, argv: list[str]) -> list[str]:
    """The command that runs `argv` on `cpus` (unchanged if None)."""
    if cpus is None:
        return argv
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]


def client_argv(argv: list[str]) -> list[str]:
    """The command that starts a load client where `pin` put clients (unchanged if unpinned)."""
    return on_cpus(_client_cpus, argv)
