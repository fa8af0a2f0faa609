"""The no-op task for RQ (`rq_tasks.noop`): RQ workers import jobs' functions by dotted name."""

from __future__ import annotations


def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the work."""
