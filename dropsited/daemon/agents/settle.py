"""Apply an agent's Outcome to its task: the one place a dispatched task leaves active/.

Outcomes are total: whatever an agent printed, its task ends within its attempts. A
result that can never be stored (NaN, a lone surrogate, over the size limit, a
destination folder that is gone) becomes a failed attempt with that reason, counted,
with backoff. Only a write the file system refuses for now (disk full, read-only,
permissions) leaves the task held, for the daemon to release once writes work again.
"""

from __future__ import annotations

import errno

from ...protocol import ClaimLost, DropSiteError, Task
from ...protocol.errors import InvalidTask
from ...protocol.store import StorageError
from ...protocol.workspace import DropSite
from ..context import log, log_limited
from .outcome import BLOCK, DONE, FAIL, FEEDBACK, TEMPFAIL, Outcome

# The file system refuses writes for now: nothing about the outcome is wrong.
TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


def settle(ds: DropSite, task: Task, outcome: Outcome, agent: str) -> str:
    """Record the outcome; returns the folder the task went to ('lost' if the claim was
    lost, 'later' for a temporary failure, 'error' if nothing could be written now)."""
    try:
        try:
            return _apply(ds, task, outcome)
        except (InvalidTask, StorageError, DropSiteError) as exc:
            if isinstance(exc, ClaimLost) or _transient(exc) or outcome.kind == FAIL and \
                    not isinstance(exc, InvalidTask):
                raise
            unstorable = Outcome(FAIL, error=f"outcome could not be stored: {exc}",
                                 details={"reason": "unstorable_outcome"})
            log.warning("%s: %s: %s; counted as a failed attempt", agent, task.id, exc)
            return _apply(ds, task, unstorable)
    except ClaimLost as exc:
        log.warning("%s: %s; result kept in late-results.jsonl", agent, exc)
        return "lost"
    except DropSiteError as exc:
        # Disk full or similar: the task stays in active/ under the daemon's
        # name and the daemon requeues it once writes succeed again; never lost.
        # Logged once a minute, not once per task, while the condition lasts.
        log_limited("storage", f"{agent}: could not record outcome of {task.id}: {exc}")
        return "error"


def _apply(ds: DropSite, task: Task, outcome: Outcome) -> str:
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


def _transient(exc: Exception) -> bool:
    return isinstance(exc, StorageError) and exc.errno in TRANSIENT


def release(ds: DropSite, task: Task, reason: str, agent: str) -> None:
    """Give a task back without using an attempt (drain, spawn failure)."""
    try:
        ds.release(task, reason)
    except ClaimLost:
        pass
    except DropSiteError as exc:
        log.error("%s: could not release %s: %s", agent, task.id, exc)
