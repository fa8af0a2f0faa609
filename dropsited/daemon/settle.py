"""Apply an agent's Outcome to its task: the one place a dispatched task leaves active/."""

from __future__ import annotations

from ..protocol import ClaimLost, DropSiteError, Task
from ..protocol.workspace import DropSite
from .context import log, log_limited
from .outcome import BLOCK, DONE, FEEDBACK, TEMPFAIL, Outcome


def settle(ds: DropSite, task: Task, outcome: Outcome, agent: str) -> str:
    """Record the outcome; returns the folder the task went to ('lost' if the claim was lost)."""
    try:
        if outcome.kind == DONE:
            ds.complete(task, outcome.result or {})
            return "done"
        if outcome.kind == FEEDBACK:
            ds.request_feedback(task, outcome.question)
            return "feedback"
        if outcome.kind == BLOCK:
            ds.block(task, outcome.error)
            return "blocked"
        folder = ds.fail(task, outcome.error, tempfail=outcome.kind == TEMPFAIL,
                         details=outcome.details)
        return "later" if outcome.kind == TEMPFAIL else folder  # not a failure of the agent
    except ClaimLost as exc:
        log.warning("%s: %s; result kept in late-results.jsonl", agent, exc)
        return "lost"
    except DropSiteError as exc:
        # Disk full or similar: the task stays in active/ under the daemon's
        # name and the daemon requeues it once writes succeed again; never lost.
        # Logged once a minute, not once per task, while the condition lasts.
        log_limited("storage", f"{agent}: could not record outcome of {task.id}: {exc}")
        return "error"


def release(ds: DropSite, task: Task, reason: str, agent: str) -> None:
    """Give a task back without using an attempt (drain, spawn failure)."""
    try:
        ds.release(task, reason)
    except ClaimLost:
        pass
    except DropSiteError as exc:
        log.error("%s: could not release %s: %s", agent, task.id, exc)

