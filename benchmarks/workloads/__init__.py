"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import core, network

ALL = {**core.WORKLOADS, **network.WORKLOADS}
