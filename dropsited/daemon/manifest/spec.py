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

__all__ = ["RESTARTS", "TASK_FILE", "AgentSpec", "Backoff", "GiveUp", "LogSpec", "Manifest",
           "ManifestError"]


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
    prefetch: int = 1
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
        return out


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: where it came from, the workspace, and its agents in file order."""

    path: Path
    workspace: Path
    agents: tuple[AgentSpec, ...]
    defaults_raw: dict[str, Any] | None = field(default=None, hash=False)

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
        }
