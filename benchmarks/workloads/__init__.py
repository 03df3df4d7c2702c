"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import core, frameworks, network, processes, tls

ALL = {
    **core.WORKLOADS,
    **network.WORKLOADS,
    **tls.WORKLOADS,
    **frameworks.WORKLOADS,
    **processes.WORKLOADS,
}
