"""Why the daemon stopped a process that held a task on request, and where the task goes.

A control request (`dropsited stop`, `restart`, `cancel`) stops a process mid-task: the
group that ran it records the task by its Interrupt once the process is gone, instead of
by its exit. A stop or restart gives the task back unused; a cancel sends it to failed/
(or to inbox/ with --requeue), `by` and `uid` in its history either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...protocol import ClaimLost, DropSiteError, Task
from ...protocol.control import Requester
from ..context import Context, log
from .settle import Settled


@dataclass(frozen=True)
class Interrupt:
    """What a stopped task becomes: released (stop, restart) or cancelled."""

    by: Requester
    cancel: bool = False
    requeue: bool = False
    why: str = "stopped"  # "stopped" or "restarted": the released task's reason

    def settle(self, ctx: Context, task: Task, agent: str) -> Settled:
        """Record the task where this interrupt sends it (never raises)."""
        who = {"by": self.by.user, "uid": self.by.uid}
        try:
            if self.cancel:
                folder = ctx.ds.cancel(task, self.by.user, requeue=self.requeue, uid=self.by.uid)
                return Settled.FAILED if folder == "failed" else Settled.RELEASED
            ctx.ds.release(task, f"agent {self.why} by {self.by.user}", **who)
        except ClaimLost as exc:
            log.warning("%s: %s", agent, exc)
            return Settled.LOST
        except (DropSiteError, OSError) as exc:
            log.error("%s: could not record %s (%s by %s): %s", agent, task.id,
                      "cancel" if self.cancel else self.why, self.by.user, exc)
            return Settled.ERROR
        return Settled.RELEASED
