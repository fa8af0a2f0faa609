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

import errno

from ..protocol import ClaimLost, DropSiteError, Task
from ..protocol.errors import InvalidTask
from ..protocol.store import StorageError
from ..protocol.workspace import DropSite
from .context import Context, log, log_limited
from .outcome import BLOCK, DONE, FAIL, FEEDBACK, TEMPFAIL, Outcome

# The file system refuses writes for now: nothing about the outcome is wrong.
TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOTCONN,
                       errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                       errno.EHOSTDOWN, errno.ECONNRESET, errno.ECONNREFUSED, errno.EAGAIN,
                       errno.EBUSY, errno.EINTR})


def settle(ctx: Context, task: Task, outcome: Outcome, agent: str) -> str:
    """Record the outcome; returns the folder the task went to ('lost' if the claim was
    lost, 'later' for a temporary failure, 'error' when the file system refused it for
    now: then it is parked in ctx.parked for `retry_parked`)."""
    folder = _settle(ctx.ds, task, outcome, agent)
    if folder == "error":
        ctx.parked[task.id] = (task, outcome, agent)
    return folder


def retry_parked(ctx: Context) -> list[tuple[str, str]]:
    """Write the parked outcomes again (main loop): (task id, folder) of each settled."""
    settled = []
    for task_id, (task, outcome, agent) in list(ctx.parked.items()):
        folder = _settle(ctx.ds, task, outcome, agent)
        if folder != "error":
            del ctx.parked[task_id]
            settled.append((task_id, folder))
    return settled


def _settle(ds: DropSite, task: Task, outcome: Outcome, agent: str) -> str:
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
    try:
        return _record(ds, task, outcome)
    except OSError as exc:  # a raw error of the file system (ENOTCONN in a partition)
        raise StorageError(f"{exc.filename or ds.workspace}: {exc.strerror or exc}",
                           exc.errno) from None


def _record(ds: DropSite, task: Task, outcome: Outcome) -> str:
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
    except (DropSiteError, OSError) as exc:
        log.error("%s: could not release %s: %s", agent, task.id, exc)
