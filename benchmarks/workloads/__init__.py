"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import core, network, processes, tls

ALL = {**core.WORKLOADS, **network.WORKLOADS, **tls.WORKLOADS, **processes.WORKLOADS}
