"""What threads and signal handlers tell the daemon's loop: small frozen values.

Only the loop's thread changes the daemon's state. A slot thread, an I/O thread, the
inbox watcher or a signal handler posts one of these to `Context.events`; the loop
takes them in order and hands each to its handler, looked up by type in one table
(`Daemon.handlers`), as honcho's manager does with its typed messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .agents.settle import Settled


@dataclass(frozen=True)
class Hint:
    """inbox/ changed: `name` is the entry to look at; None asks for a rescan (overflow)."""

    name: str | None


@dataclass(frozen=True)
class Finished:
    """A task left an agent: where it went, and the error of a failed attempt."""

    agent: str
    task_id: str
    settled: Settled
    error: str = ""


@dataclass(frozen=True)
class SpawnFailed:
    """An exec agent's command could not start for this task (given back, unused)."""

    agent: str
    task_id: str
    message: str


@dataclass(frozen=True)
class RestartInstance:
    """A worker instance must be restarted: it did not read or answer within the timeout."""

    agent: str
    index: int


@dataclass(frozen=True)
class ReapNow:
    """A service agent exited: its claims go back to inbox/ now, not within a second."""


@dataclass(frozen=True)
class ControlRequest:
    """The control folder changed (`name`, a request file maybe); None asks for a rescan."""

    name: str | None


@dataclass(frozen=True)
class Signal:
    """A signal the daemon received; acted on in the loop, never in the handler."""

    signum: int


@dataclass(frozen=True)
class Ready:
    """A worker printed its `{"ready": true}` line (`pid`: that process, so a line of
    a process since replaced is ignored)."""

    agent: str
    index: int
    pid: int


@dataclass(frozen=True)
class ProbeDone:
    """A ready or health check run ended (`kind`: "ready" or "health"); `index` -1 and
    `pid` 0 for an exec agent's ready check, which checks the agent, not a process."""

    agent: str
    index: int
    pid: int
    kind: str
    ok: bool
    detail: str = ""


Event = (Hint | Finished | SpawnFailed | RestartInstance | ReapNow | Signal | ControlRequest
         | Ready | ProbeDone)
