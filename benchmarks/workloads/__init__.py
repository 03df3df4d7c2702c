"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import clients, core, frameworks, network, processes, tls

ALL = {
    **core.WORKLOADS,
    **network.WORKLOADS,
    **tls.WORKLOADS,
    **frameworks.WORKLOADS,
    **clients.WORKLOADS,
    **processes.WORKLOADS,
}

# The third-party modules a row imports, by row (the rows not named need none).
MODULES = {**frameworks.MODULES, **clients.MODULES}
