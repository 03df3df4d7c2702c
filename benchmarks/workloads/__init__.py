"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import core, network, processes

ALL = {**core.WORKLOADS, **network.WORKLOADS, **processes.WORKLOADS}
