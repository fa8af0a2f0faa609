"""What a manifest says once it is read: frozen dataclasses, every value checked and
normalised (paths absolute, durations in float seconds, signals as numbers).

The daemon compares these values on reload ("definition changed"), so every field is
a plain comparable value. `Backoff` and the restart modes are the restart policy's own
(supervision/restart_policy.py): the manifest names them, the policy uses them.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..supervision.restart_policy import RESTART_MODES, Backoff

TASK_FILE = "{task_file}"
MODES = ("exec", "worker", "service")
INPUTS = ("stdin", "argv")
RESTARTS = RESTART_MODES

# The events hooks (`on:`) can be given (docs/HOOKS.md): what happened to a task, and to an agent.
TASK_EVENTS = ("done", "failed", "feedback", "blocked", "quarantined", "late_result")
AGENT_EVENTS = ("fatal", "restart", "memory_restart")
HOOK_EVENTS = TASK_EVENTS + AGENT_EVENTS
HOOK_BODIES = ("event", "text")

__all__ = ["AGENT_EVENTS", "HOOK_BODIES", "HOOK_EVENTS", "RESTARTS", "TASK_EVENTS", "TASK_FILE",
           "AgentSpec", "Backoff", "GiveUp", "HookSpec", "LogSpec", "Manifest", "ManifestError",
           "Probe", "RateLimit", "RetentionSpec", "ScheduleSpec", "TaskTemplate"]


class ManifestError(ValueError):
    """The manifest cannot be used; `.errors` holds every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = [e.replace("\r", "\\r").replace("\n", "\\n") for e in errors]
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


@dataclass(frozen=True)
class GiveUp:
    """FATAL after `failures` failed starts within `window` seconds, instead of spinning."""

    failures: int = 5
    window: float = 60.0


@dataclass(frozen=True)
class LogSpec:
    """Where an agent's output goes; `file=None` lets the daemon pick the place."""

    file: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3


@dataclass(frozen=True)
class RateLimit:
    """At most `calls` runs of one hook per `per` seconds (a token bucket); the rest are
    dropped and counted, so a burst of tasks cannot turn into a burst of processes."""

    calls: int = 60
    per: float = 60.0


@dataclass(frozen=True)
class HookSpec:
    """One entry of `on:`: which events, a command or a URL, filters and bounds.

    `agent` is the agent whose `on:` holds it (None at the top level): such a hook only
    sees that agent's events. A filter left None matches everything; `agents` must name
    the event's agent; `tags` and `folders` filter the events that have a task or a
    folder and let the others (agent events) pass (hooks/payload.py's `matches`).
    """

    name: str
    events: tuple[str, ...]
    command: tuple[str, ...] | str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    body: str = "event"
    env: dict[str, str] = field(default_factory=dict, hash=False)
    cwd: Path | None = None
    timeout: float = 10.0
    retries: int = 0
    backoff: Backoff = Backoff(initial=1.0, max=30.0, factor=2.0)
    rate: RateLimit = RateLimit()
    tags: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    folders: tuple[str, ...] | None = None
    agent: str | None = None

    def argv(self) -> list[str]:
        """The command to exec: a list as is, a string through /bin/sh -c (as agents')."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command or ())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view; header values are not shown (they often hold tokens)."""
        out = dataclasses.asdict(self)
        for key in ("events", "tags", "agents", "folders"):
            out[key] = None if out[key] is None else list(out[key])
        if isinstance(self.command, tuple):
            out["command"] = list(self.command)
        out["cwd"] = None if self.cwd is None else str(self.cwd)
        if self.url is not None:  # a webhook's path is often its secret
            scheme, _, rest = self.url.partition("://")
            out["url"] = f"{scheme}://{rest.split('/', 1)[0]}/..."
        out["headers"] = {name: "..." for name in self.headers}
        out["env"] = {name: "..." for name in self.env}
        return out


@dataclass(frozen=True)
class Probe:
    """A command the daemon runs beside an agent (`ready_check:`, `health_check:`): exit 0
    means yes. Each run is killed after `timeout`; `failures` failed runs in a row make a
    health check restart the agent (a ready check keeps trying until `start_timeout`)."""

    command: tuple[str, ...] | str
    interval: float = 1.0
    timeout: float = 5.0
    failures: int = 3

    def argv(self) -> list[str]:
        """A list is exec'd as is, a string goes through /bin/sh -c (as `command:`)."""
        return ["/bin/sh", "-c", self.command] if isinstance(self.command, str) \
            else list(self.command)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["command"] = self.command if isinstance(self.command, str) else list(self.command)
        return out


@dataclass(frozen=True)
class AgentSpec:
    """One agent, with defaults applied and every value checked and normalised.

    Equality is what the daemon uses on reload to decide "definition changed", so every
    field is a plain comparable value (paths absolute, durations in float seconds).
    """

    name: str
    command: tuple[str, ...] | str
    cwd: Path
    env: dict[str, str] = field(hash=False)
    mode: str = "exec"
    input: str = "stdin"
    tags: tuple[str, ...] | None = None
    concurrency: int = 1
    timeout: float | None = None
    restart: str = "never"
    start_seconds: float = 1.0
    backoff: Backoff = Backoff()
    give_up: GiveUp = GiveUp()
    stop_signal: int = int(signal.SIGTERM)
    stop_grace: float = 10.0
    max_memory: int | None = None
    log: LogSpec = LogSpec()
    description: str | None = None
    role: str | None = None
    # Not part of the definition a reload compares: changing an agent's hooks
    # reconfigures the hooks, it does not restart the agent.
    on: tuple[HookSpec, ...] = field(default=(), compare=False)
    # readiness, health, start order and the soft timeout (docs/MANIFEST.md)
    ready: str | None = None  # "line": a worker prints {"ready": true} when it is up
    ready_check: Probe | None = None
    start_timeout: float = 60.0
    health_check: Probe | None = None
    after: tuple[str, ...] = ()
    timeout_signal: int | None = None
    timeout_grace: float | None = None

    @property
    def readiness(self) -> bool:
        """Opted in to a ready signal: RUNNING only once it came, not after start_seconds."""
        return self.ready is not None or self.ready_check is not None

    def soft_timeout(self) -> float | None:
        """Seconds into a task at which `timeout_signal` is sent; None without one.

        `timeout_grace` defaults to half the timeout, at most 10 s."""
        if self.timeout_signal is None or self.timeout is None:
            return None
        grace = min(10.0, self.timeout / 2) if self.timeout_grace is None else self.timeout_grace
        return max(0.0, self.timeout - grace)

    def argv(self, task_file: str | None = None) -> list[str]:
        """The argument vector to exec, with `{task_file}` filled in when a task is given.

        Plain str.replace, never str.format: task paths are data and must not be able to
        reach format fields. A string command goes through /bin/sh, so the path is quoted.
        """
        if isinstance(self.command, str):
            cmd = self.command
            if task_file is not None:
                cmd = cmd.replace(TASK_FILE, shlex.quote(task_file))
            return ["/bin/sh", "-c", cmd]
        if task_file is None:
            return list(self.command)
        return [part.replace(TASK_FILE, task_file) for part in self.command]

    def same_except_concurrency(self, other: AgentSpec) -> bool:
        """True if only `concurrency` differs: the daemon can then resize instead of restart."""
        return dataclasses.replace(self, concurrency=other.concurrency) == other

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (signal as its name, paths as strings)."""
        out = dataclasses.asdict(self)
        out["command"] = self.command if isinstance(self.command, str) else list(self.command)
        out["cwd"] = str(self.cwd)
        out["tags"] = None if self.tags is None else list(self.tags)
        out["stop_signal"] = signal.Signals(self.stop_signal).name
        out["log"]["file"] = None if self.log.file is None else str(self.log.file)
        out["on"] = [hook.to_dict() for hook in self.on]
        for key in ("ready_check", "health_check"):
            probe = getattr(self, key)
            out[key] = None if probe is None else probe.to_dict()
        out["after"] = list(self.after)
        out["timeout_signal"] = (None if self.timeout_signal is None
                                 else signal.Signals(self.timeout_signal).name)
        return out


@dataclass(frozen=True)
class TaskTemplate:
    """The task a schedule drops (TaskBuilder's fields); context is compared by value."""

    title: str
    created_by: str = "dropsited"
    tags: tuple[str, ...] = ()
    assign: str | None = None
    context: dict[str, Any] = field(default_factory=dict, hash=False)
    priority: int = 5
    max_retries: int = 3
    description: str = ""


@dataclass(frozen=True)
class ScheduleSpec:
    """One `schedules:` entry: a cron expression in a zone or an interval, the missed-run
    and overlap policies, and the task to drop (schedules/slots.py decides when)."""

    name: str
    task: TaskTemplate
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    catch_up: str = "one"
    skip_if_running: bool = False

    def describe(self) -> str:
        """One line for people: `cron 0 6 * * * (Europe/Berlin)` or `every 600s`."""
        if self.every is not None:
            return f"every {self.every:g}s"
        return f"cron {self.cron} ({self.tz})"


@dataclass(frozen=True)
class RetentionSpec:
    """`retention:`: finished tasks older than these ages go to archive/ (None: kept)."""

    done: float | None = None
    failed: float | None = None
    compress: bool = False
    interval: float = 600.0
    rate: int = 200  # files moved per second at most, so dispatch keeps the disk


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: where it came from, the workspace, and its agents in file order."""

    path: Path
    workspace: Path
    agents: tuple[AgentSpec, ...]
    defaults_raw: dict[str, Any] | None = field(default=None, hash=False)
    schedules: tuple[ScheduleSpec, ...] = ()
    retention: RetentionSpec | None = None
    on: tuple[HookSpec, ...] = ()  # the top level's hooks (each agent's are in its spec)

    def hooks(self) -> tuple[HookSpec, ...]:
        """Every hook: the top level's, then each agent's, in file order."""
        return self.on + tuple(hook for agent in self.agents for hook in agent.on)

    def agent(self, name: str) -> AgentSpec | None:
        """The agent called `name`, or None."""
        return next((a for a in self.agents if a.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, used by `dropsited check --json`."""
        return {
            "path": str(self.path),
            "workspace": str(self.workspace),
            "defaults": self.defaults_raw,
            "agents": [a.to_dict() for a in self.agents],
            "schedules": [dataclasses.asdict(s) for s in self.schedules],
            "retention": None if self.retention is None else dataclasses.asdict(self.retention),
            "on": [hook.to_dict() for hook in self.on],
        }
