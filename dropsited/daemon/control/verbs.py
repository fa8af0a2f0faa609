"""What each control verb does to the agent groups, through the AgentGroup interface only.

A verb either answers at once (a Result) or starts something that takes time (stopping
processes, a task's process being cut short) and answers when it is over (a Pending,
checked on every loop turn). Nothing here asks which kind of group it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...protocol import DropSiteError, TaskNotFound
from ...protocol.control import Request, Requester
from ..agents.agent_group import AgentGroup
from ..agents.interrupt import Interrupt
from ..agents.roster import Roster
from ..context import Context

SETTLE_MARGIN = 30.0  # beyond the longest stop grace, a pending request gives up


@dataclass(frozen=True)
class Result:
    """A reply's substance: ok, one line, a code for scripts when not ok, details."""

    ok: bool
    message: str
    code: str | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Pending:
    """A verb under way: `check()` gives its Result once it is over, None until then."""

    check: Callable[[], Result | None]
    deadline: float
    late: str  # the message if the deadline passes first


def carry_out(ctx: Context, roster: Roster, request: Request, by: Requester) -> Result | Pending:
    if request.verb == "cancel":
        return cancel(ctx, roster, request, by)
    try:
        groups = roster.select(request.agent)
    except KeyError:
        known = ", ".join(roster.current) or "none"
        return Result(False, f"unknown agent {request.agent!r} (agents: {known})", "unknown_agent")
    if request.verb == "scale":
        return scale(groups, request.count)
    limit = SETTLE_MARGIN + max((g.spec.stop_grace for g in groups), default=0)
    deadline = ctx.clock() + limit
    if request.verb == "start":
        for group in groups:
            group.start_on_request()
        return _when(lambda: _started(groups), deadline, limit, "started", groups, [], roster)
    why = "restarted" if request.verb == "restart" else "stopped"
    interrupt = Interrupt(by, why=why)
    interrupted: list[str] = []
    for group in groups:
        if request.verb == "restart":
            interrupted += group.restart_on_request(interrupt)
        else:
            interrupted += group.stop_on_request(interrupt)
    done = _started if request.verb == "restart" else _stopped
    return _when(lambda: done(groups), deadline, limit, why, groups, interrupted, roster)


def _when(over: Callable[[], bool], deadline: float, limit: float, verb: str,
          groups: list[AgentGroup], interrupted: list[str], roster: Roster) -> Pending:
    """A Pending that answers once `over()` holds and the interrupted tasks are back."""
    names = ", ".join(g.name for g in groups) or "no agents"

    def check() -> Result | None:
        held = roster.running_tasks()
        if not over() or any(t in held for t in interrupted):
            return None
        back = f"; {len(interrupted)} task(s) back in inbox/" if interrupted else ""
        return Result(True, f"{verb} {names}{back}", details={
            "agents": {g.name: _summary(g) for g in groups}, "requeued": interrupted})

    return Pending(check, deadline, f"{names}: not {verb} within {limit:.0f}s")


def _stopped(groups: list[AgentGroup]) -> bool:
    return all(not g.stopping() and not g.running and not g.held_pids() for g in groups)


def _started(groups: list[AgentGroup]) -> bool:
    return all(not g.start_pending and not g.stopping() for g in groups)


def _summary(group: AgentGroup) -> dict:
    now = group.ctx.clock()
    return {"state": group.state(now).name, "pids": sorted(group.held_pids()),
            "concurrency": group.spec.concurrency, "stopped_by": group.stopped_by}


def scale(groups: list[AgentGroup], count: int) -> Result:
    for group in groups:
        group.scale(count)
    held = [g.name for g in groups if g.stopped_by is not None]
    note = f" ({', '.join(held)} stay(s) stopped until started)" if held else ""
    names = ", ".join(g.name for g in groups) or "no agents"
    return Result(True, f"scaled {names} to {count}{note}",
                  details={"agents": {g.name: _summary(g) for g in groups}})


# -- cancel ------------------------------------------------------------------------------
def cancel(ctx: Context, roster: Roster, request: Request, by: Requester) -> Result | Pending:
    task_id = request.task
    found = ctx.ds.store.locate(task_id)
    if found is None:
        return Result(False, f"no task {task_id} in {ctx.ds.workspace}", "unknown_task")
    if found.folder in ("done", "failed"):
        return Result(False, f"task {task_id} has already finished (in {found.folder}/)",
                      "finished")
    if found.folder != "active":
        return _cancel_at_rest(ctx, request, by)
    owner = next((g for g in roster.all() if task_id in g.running), None)
    holder = found.holder
    if owner is None:
        who = f"{holder.agent} (pid {holder.pid} on {holder.host})" if holder else "someone"
        return Result(False, f"task {task_id} is held by {who}, not by an agent of this "
                      "daemon; if that process is gone, give it back with `dropsited release`",
                      "not_ours")
    interrupt = Interrupt(by, cancel=True, requeue=request.requeue)
    if not owner.cancel(task_id, interrupt):
        return Result(False, f"task {task_id} is held by {owner.mode} agent {owner.name}, "
                      "whose processes claim tasks themselves: restart the agent instead",
                      "not_cancellable")

    def check() -> Result | None:
        if task_id in roster.running_tasks():
            return None
        return _where_it_went(ctx, task_id, request.requeue, owner)

    deadline = ctx.clock() + owner.spec.stop_grace + SETTLE_MARGIN
    return Pending(check, deadline, f"task {task_id}: its process did not stop in time")


def _cancel_at_rest(ctx: Context, request: Request, by: Requester) -> Result:
    try:
        dest, task = ctx.ds.cancel_at_rest(request.task, by.user, requeue=request.requeue,
                                           uid=by.uid)
    except TaskNotFound:
        return Result(False, f"task {request.task} moved meanwhile (claimed?); try again", "moved")
    except DropSiteError as exc:
        return Result(False, f"task {request.task}: {exc}", "failed")
    return Result(True, f"cancelled {task.id}: now in {dest}/", details={"folder": dest})


def _where_it_went(ctx: Context, task_id: str, requeue: bool, owner: AgentGroup) -> Result:
    """The reply once the process is gone: where the task is, and whether by the cancel."""
    task = ctx.ds.get_task(task_id)
    where = ctx.ds.store.locate(task_id)
    folder = where.folder if where else "?"
    entry = task.history[-1] if task is not None and task.history else {}
    if not isinstance(entry, dict) or not entry.get("cancelled"):
        return Result(False, f"task {task_id} ended before it could be cancelled (in "
                      f"{folder}/)", "finished", {"folder": folder})
    return Result(True, f"cancelled {task_id}: its process stopped, the task is in {folder}/",
                  details={"folder": folder, "agent": owner.name})
