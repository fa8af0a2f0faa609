"""Prometheus metrics of one daemon run: what they are, how they are counted, and the
text exposition format (0.0.4, what node_exporter's textfile collector reads).

The loop's thread counts (`MetricsRecorder.task_finished`, from Finished events) and
takes a cheap snapshot of its agents every few seconds (`agent_families`); the folder
counts, which may mean listing a large done/, are taken by metrics_export.py's thread,
never by the loop. Every metric is named in docs/METRICS.md.

Counters are monotonic within one daemon run: a reload that replaces an agent's group
does not reset them (done/failed are counted here, not by the group; restarts are
carried over, `Monotonic`). A new daemon starts them at 0 again, as every Prometheus
client does; `dropsited_daemon_start_time_seconds` tells the two apart, and `rate()`
and `increase()` handle the reset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..protocol.task import Task, parse_iso
from .agents.settle import Settled
from .supervision.states import AgentState

# Task run time buckets, seconds: from a quick exec agent to an LLM call of minutes.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, math.inf)
PREFIX = "dropsited_"


@dataclass(frozen=True)
class Sample:
    """One line of the exposition: full name (with _total, _bucket... suffix), labels."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Family:
    """One metric: `name` without a counter's `_total`; `kind` counter, gauge or histogram."""

    name: str
    kind: str
    help: str
    samples: tuple[Sample, ...]


@dataclass
class Histogram:
    """Cumulative buckets, sum and count of one agent's task run times."""

    counts: list[int] = field(default_factory=lambda: [0] * len(RUN_BUCKETS))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(RUN_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
        self.total += seconds
        self.n += 1


class Monotonic:
    """A counter made from a value that may go back to 0 (a group's restarts: a reload
    replaces the group, a scale-down forgets instances): every drop is carried over."""

    def __init__(self) -> None:
        self.offset: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def observe(self, key: str, value: float) -> float:
        last = self.last.get(key, 0.0)
        if value < last:
            self.offset[key] = self.offset.get(key, 0.0) + last
        self.last[key] = value
        return self.offset.get(key, 0.0) + value


def run_seconds(task: Task | None, now_wall: float) -> float | None:
    """Seconds since the task's last claim (its last `active` history entry)."""
    if task is None:
        return None
    for entry in reversed(task.history):
        if isinstance(entry, dict) and entry.get("status") == "active":
            at = parse_iso(entry.get("at", ""))
            return None if at is None else max(0.0, now_wall - at)
    return None


class MetricsRecorder:
    """What the loop's thread counts; `families()` is safe to call from another thread
    (it copies under the GIL what it reads, and the loop only replaces snapshots)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.runs: dict[str, Histogram] = {}
        self.restarts = Monotonic()
        self.agents: tuple[Family, ...] = ()

    def task_finished(self, agent: str, settled: Settled, error: str, task: Task | None) -> None:
        """As AgentGroup.finished counts: done, or a failed attempt with an error (a
        release or an exit 75 is neither); the run time of both goes in the histogram."""
        if settled is Settled.DONE:
            self.done[agent] = self.done.get(agent, 0) + 1
        elif settled.failed_attempt and error:
            self.failed[agent] = self.failed.get(agent, 0) + 1
        else:
            return
        seconds = run_seconds(task, time.time())
        if seconds is not None:
            self.runs.setdefault(agent, Histogram()).observe(seconds)

    def snapshot_agents(self, groups: Iterable, now: float) -> None:
        """Agent states, restarts and processes, taken by the loop (cheap: no I/O)."""
        states, restarts, procs = [], [], []
        for group in groups:
            record = group.describe(now)
            name = record["name"]
            for state in AgentState:
                value = 1.0 if state.name == record["state"] else 0.0
                states.append(Sample(PREFIX + "agent_state", (("agent", name),
                                                               ("state", state.name)), value))
            total = self.restarts.observe(name, float(record.get("restarts", 0)))
            restarts.append(Sample(PREFIX + "agent_restarts_total", (("agent", name),), total))
            procs.append(Sample(PREFIX + "agent_processes", (("agent", name),),
                                float(len(record.get("pids", [])))))
        self.agents = (
            Family(PREFIX + "agent_state", "gauge",
                   "1 for the state each agent is in, 0 for the others.", tuple(states)),
            Family(PREFIX + "agent_restarts", "counter",
                   "Restarts of each agent's processes in this daemon run.", tuple(restarts)),
            Family(PREFIX + "agent_processes", "gauge",
                   "Live processes of each agent.", tuple(procs)),
        )

    def families(self) -> list[Family]:
        """The task counters, the run time histogram and the last agent snapshot."""
        def counter(name: str, help_: str, values: dict[str, int]) -> Family:
            samples = tuple(Sample(f"{PREFIX}{name}_total", (("agent", a),), float(v))
                            for a, v in sorted(dict(values).items()))
            return Family(PREFIX + name, "counter", help_, samples)

        return [
            Family(PREFIX + "daemon_start_time_seconds", "gauge",
                   "When this daemon started (Unix time): counters restart at 0 with it.",
                   (Sample(PREFIX + "daemon_start_time_seconds", (), self.started),)),
            counter("tasks_done", "Tasks each agent finished in done/ in this daemon run.",
                    self.done),
            counter("tasks_failed", "Failed attempts of each agent (to failed/, or back to "
                    "inbox/ for a retry) in this daemon run.", self.failed),
            Family(PREFIX + "task_run_seconds", "histogram",
                   "Task run time per agent, from the claim to the outcome.",
                   tuple(_histogram_samples(dict(self.runs)))),
            *self.agents,
        ]


def _histogram_samples(runs: dict[str, Histogram]) -> Iterable[Sample]:
    name = PREFIX + "task_run_seconds"
    for agent, hist in sorted(runs.items()):
        for bound, count in zip(RUN_BUCKETS, list(hist.counts), strict=True):
            le = "+Inf" if math.isinf(bound) else repr(bound)
            yield Sample(name + "_bucket", (("agent", agent), ("le", le)), float(count))
        yield Sample(name + "_sum", (("agent", agent),), hist.total)
        yield Sample(name + "_count", (("agent", agent),), float(hist.n))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def render(families: Iterable[Family]) -> bytes:
    """The text exposition format: HELP and TYPE lines, then one line per sample."""
    lines = []
    for family in families:
        shown = family.name + ("_total" if family.kind == "counter" else "")
        lines.append(f"# HELP {shown} {family.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {shown} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(f"{sample.name}{{{labels}}} {_number(sample.value)}" if labels
                         else f"{sample.name} {_number(sample.value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")
