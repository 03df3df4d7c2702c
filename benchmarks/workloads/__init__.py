"""Benchmark workloads, by name. Each module contributes a WORKLOADS dict."""

from . import core

ALL = {**core.WORKLOADS}
