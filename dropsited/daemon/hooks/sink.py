"""`Hooks`: the daemon's one object for event hooks; the places where events happen
call it (all of them may be on any thread, and each call returns at once).

- a task an agent of this daemon handled: `task_settled` (agents/settle.py, the one
  place a dispatched task leaves active/): done, failed (every failed attempt; `final`
  says whether it went to failed/), feedback, blocked, late_result (the claim was
  lost: the outcome went to late-results.jsonl);
- an entry moved to quarantine/: `quarantined` (TaskStore's quarantine observer);
- an agent's process: `agent_event` (supervision/supervised.py, agents/exec_agent.py):
  fatal, restart, memory_restart.

Tasks moved by other programs (a person's `dropsited complete`, a 0.1.0 peer) are not
reported: docs/HOOKS.md says what is and is not covered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...protocol import Task
from ..manifest import HookSpec, Manifest
from . import payload, webhook
from .command import Attempt, CommandRunner
from .runner import HookRunner

if TYPE_CHECKING:
    from ..agents.outcome import Outcome
    from ..agents.settle import Settled
    from ..context import Context

CLOSE_GRACE = 2.0  # at shutdown, queued events have this long to go out
# Where a late outcome would have sent its task (the folder of a `late_result`).
_LATE_FOLDER = {"done": "done", "feedback": "feedback", "block": "blocked", "fail": "failed",
                "tempfail": "inbox"}


class Hooks:
    def __init__(self, manifest: Manifest, ctx: Context | None) -> None:
        self.workspace = str(manifest.workspace)
        self.commands = CommandRunner(ctx)
        self.runner = HookRunner(manifest.hooks(), self._deliver)
        self.wanted = self.runner.events()
        self._published = -1

    def configure(self, manifest: Manifest) -> None:
        """A reload: the new manifest's hooks (counters kept by name)."""
        self.runner.configure(manifest.hooks())
        self.wanted = self.runner.events()

    # -- where events come from -------------------------------------------------------
    def task_settled(self, task: Task, settled: Settled, agent: str, outcome: Outcome) -> None:
        kind, folder = _task_kind(settled, outcome)
        if kind is None or kind not in self.wanted:
            return
        error = outcome.error if kind in ("failed", "blocked", "late_result") else ""
        self.runner.emit(payload.task_event(kind, task, agent, folder, self.workspace, error))

    def quarantined(self, record: dict[str, Any]) -> None:
        if "quarantined" in self.wanted:
            self.runner.emit(payload.quarantine_event(record, self.workspace))

    def agent_event(self, kind: str, agent: str, fields: dict[str, Any]) -> None:
        if kind in self.wanted:
            self.runner.emit(payload.agent_event(kind, agent, self.workspace, fields))

    # -- delivery (the pool's threads) -----------------------------------------------------
    def _deliver(self, hook: HookSpec, event: dict) -> Attempt:
        if hook.url is not None:
            return webhook.post(hook, event)
        data = webhook.body_of(hook, event) + b"\n"
        return self.commands.run(hook, data, payload.environment(event, hook.name))

    # -- for the daemon's loop --------------------------------------------------------------
    def pids(self) -> set[int]:
        """Hook processes alive now: the orphan sweep must leave them alone."""
        return self.commands.pids()

    def stats(self) -> dict[str, Any]:
        """`hooks` in the daemon's status: totals and each hook's counters."""
        per_hook = self.runner.stats()
        keys = ("runs", "ok", "failed", "timed_out", "retries", "dropped", "rate_limited",
                "queued")
        totals = {k: sum(s[k] for s in per_hook.values()) for k in keys}
        return {**totals, "hooks": per_hook}

    def changed(self) -> bool:
        """True once per change of a counter: the status is then written again."""
        version = self.runner.version
        if version == self._published:
            return False
        self._published = version
        return True

    def close(self, grace: float = CLOSE_GRACE) -> None:
        self.runner.close(grace)
        self.commands.kill_all()


def _task_kind(settled: Settled, outcome: Outcome) -> tuple[str | None, str]:
    value = settled.value
    if value in ("done", "feedback", "blocked"):
        return value, value
    if value in ("inbox", "failed"):  # Settled.RETRY, Settled.FAILED
        return "failed", value
    if value == "lost":
        return "late_result", _LATE_FOLDER.get(outcome.kind.value, "failed")
    return None, ""  # later (exit 75), released, refused for now (written again later)
