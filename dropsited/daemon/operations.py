"""What an operator adds around the agents: schedules, retention and metrics.

Each is its own mechanism (schedules/, retention.py, metrics*.py); this object only
starts, ticks, reloads and stops them together, so the daemon's loop has one thing to
call at each step instead of one per feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..protocol import DropSite
from .agents.agent_group import AgentGroup
from .events import Finished
from .manifest import Manifest
from .metrics import MetricsRecorder
from .metrics_export import MetricsExporter, metrics_file
from .retention import RetentionThread
from .schedules.runner import Scheduler

METRICS_SNAPSHOT_INTERVAL = 2.0  # agent states for metrics.prom, written every 5 s


class Operations:
    def __init__(self, ds: DropSite, manifest: Manifest, shared: bool,
                 metrics_address: str | None) -> None:
        self.ds = ds
        self.manifest = manifest
        self.metrics = MetricsRecorder()  # counters of this run (metrics.py)
        self.exporter = MetricsExporter(ds.workspace, self.metrics, metrics_file(shared))
        self.metrics_address = metrics_address  # `--metrics HOST:PORT`: also over HTTP
        self.schedules: Scheduler | None = None
        self.retention: RetentionThread | None = None

    def serve(self) -> str | None:
        """Start the HTTP endpoint if asked for: its address; MetricsUnavailable if not."""
        if self.metrics_address is None:
            return None
        return self.exporter.serve(self.metrics_address)

    def start(self, groups: Iterable[AgentGroup], now: float) -> None:
        self.schedules = Scheduler(self.ds, self.manifest.schedules)
        self.retention = RetentionThread(self.ds.store, self.manifest.retention)
        self.retention.start()
        self.metrics.snapshot_agents(groups, now)
        self.exporter.start()

    def tick(self) -> None:
        """Each running loop turn, before dispatch: a task due now is handed out this turn."""
        self.schedules.tick()

    def wakeup(self) -> float | None:
        """Seconds until the next schedule slot (the loop waits no longer)."""
        return None if self.schedules is None else self.schedules.wakeup()

    def periodic(self, due: Callable[[str, float], bool], groups: Iterable[AgentGroup],
                 now: float) -> None:
        if due("metrics", METRICS_SNAPSHOT_INTERVAL):
            self.metrics.snapshot_agents(groups, now)

    def task_finished(self, event: Finished, task: Any) -> None:
        self.metrics.task_finished(event.agent, event.settled, event.error, task)

    def reload(self, new: Manifest) -> None:
        self.manifest = new
        self.schedules.update(new.schedules)
        self.retention.update(new.retention)

    def stop_background(self) -> None:
        """First at shutdown: no archive pass runs while the agents stop."""
        if self.retention is not None:
            self.retention.stop()

    def stop(self, groups: Iterable[AgentGroup], now: float) -> None:
        """Last at shutdown: the final metrics, then the exporter stops."""
        self.metrics.snapshot_agents(groups, now)
        self.exporter.stop()
