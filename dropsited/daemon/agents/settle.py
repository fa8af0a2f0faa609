"""Apply an agent's Outcome to its task: the one place a dispatched task leaves active/.

Outcomes are total: whatever an agent printed, its task ends within its attempts. A
result that can never be stored (NaN, a lone surrogate, over the size limit, a
destination folder that is gone) becomes a failed attempt with that reason, counted,
with backoff. A write the file system refuses for now (disk full, read-only,
permissions, a network mount gone) leaves the task held and its outcome parked; the
loop writes it again until it is stored, or, if another host took the task meanwhile
(a partition), keeps it in late-results: the agent's work is never dropped.
"""

from __future__ import annotations

import enum
import errno

from ...protocol import ClaimLost, DropSiteError, Task
from ...protocol.errors import InvalidTask
from ...protocol.store import StorageError
from ...protocol.workspace import DropSite
from ..context import Context, log, log_limited
from .outcome import Kind, Outcome

# The file system refuses writes for now: nothing about the outcome is wrong.
TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOTCONN,
                       errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                       errno.EHOSTDOWN, errno.ECONNRESET, errno.ECONNREFUSED, errno.EAGAIN,
                       errno.EBUSY, errno.EINTR})


class Settled(enum.Enum):
    """Where a task went when it left its agent, as the agent's counters see it."""

    DONE = "done"
    FEEDBACK = "feedback"
    BLOCKED = "blocked"
    RETRY = "inbox"  # a failed attempt; it runs again after its backoff
    FAILED = "failed"  # a failed attempt, the last one
    LATER = "later"  # a temporary failure (exit 75): not a failure of the agent
    RELEASED = "released"  # given back unused (drain, a spawn that failed, claimed ahead)
    LOST = "lost"  # the claim was lost meanwhile; the result is in late-results.jsonl
    ERROR = "error"  # refused for now (disk full, a mount gone): parked, written again

    @property
    def failed_attempt(self) -> bool:
        return self in (Settled.RETRY, Settled.FAILED)


def settle(ctx: Context, task: Task, outcome: Outcome, agent: str) -> Settled:
    """Record the outcome; returns where the task went (LOST if the claim was lost, LATER
    for a temporary failure, ERROR when the file system refused it for now: then it is
    parked in ctx.parked for `retry_parked`)."""
    settled = _settle(ctx.ds, task, outcome, agent)
    if settled is Settled.ERROR:
        ctx.parked[task.id] = (task, outcome, agent)
    elif ctx.hooks is not None:
        ctx.hooks.task_settled(task, settled, agent, outcome)
    return settled


def retry_parked(ctx: Context) -> list[tuple[str, Settled]]:
    """Write the parked outcomes again (main loop): (task id, where it went) of each."""
    done = []
    for task_id, (task, outcome, agent) in list(ctx.parked.items()):
        settled = _settle(ctx.ds, task, outcome, agent)
        if settled is not Settled.ERROR:
            del ctx.parked[task_id]
            done.append((task_id, settled))
            if ctx.hooks is not None:
                ctx.hooks.task_settled(task, settled, agent, outcome)
    return done


def _settle(ds: DropSite, task: Task, outcome: Outcome, agent: str) -> Settled:
    try:
        try:
            return _apply(ds, task, outcome)
        except (InvalidTask, StorageError, DropSiteError) as exc:
            if isinstance(exc, ClaimLost) or _transient(exc) or outcome.kind is Kind.FAIL and \
                    not isinstance(exc, InvalidTask):
                raise
            unstorable = Outcome(Kind.FAIL, error=f"outcome could not be stored: {exc}",
                                 details={"reason": "unstorable_outcome"})
            log.warning("%s: %s: %s; counted as a failed attempt", agent, task.id, exc)
            return _apply(ds, task, unstorable)
    except ClaimLost as exc:
        log.warning("%s: %s; result kept in late-results.jsonl", agent, exc)
        return Settled.LOST
    except DropSiteError as exc:
        # Disk full or similar: the task stays in active/ under the daemon's
        # name and its outcome is written again later; never lost.
        # Logged once a minute, not once per task, while the condition lasts.
        log_limited("storage", f"{agent}: could not record outcome of {task.id}: {exc}")
        return Settled.ERROR


def _apply(ds: DropSite, task: Task, outcome: Outcome) -> Settled:
    try:
        return _record(ds, task, outcome)
    except OSError as exc:  # a raw error of the file system (ENOTCONN in a partition)
        raise StorageError(f"{exc.filename or ds.workspace}: {exc.strerror or exc}",
                           exc.errno) from None


def _record(ds: DropSite, task: Task, outcome: Outcome) -> Settled:
    if outcome.kind is Kind.DONE:
        ds.complete(task, outcome.result or {})
        return Settled.DONE
    if outcome.kind is Kind.FEEDBACK:
        ds.request_feedback(task, outcome.question)
        return Settled.FEEDBACK
    if outcome.kind is Kind.BLOCK:
        ds.block(task, outcome.error)
        return Settled.BLOCKED
    later = outcome.kind is Kind.TEMPFAIL
    folder = ds.fail(task, outcome.error, tempfail=later, details=outcome.details)
    return Settled.LATER if later else Settled(folder)


def _transient(exc: Exception) -> bool:
    return isinstance(exc, StorageError) and exc.errno in TRANSIENT


def release(ds: DropSite, task: Task, reason: str, agent: str) -> Settled:
    """Give a task back without using an attempt (drain, spawn failure): RELEASED."""
    try:
        ds.release(task, reason)
    except ClaimLost:
        pass
    except (DropSiteError, OSError) as exc:
        log.error("%s: could not release %s: %s", agent, task.id, exc)
    return Settled.RELEASED
