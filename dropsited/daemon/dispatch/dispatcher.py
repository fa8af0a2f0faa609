"""Handing claimed tasks to agents with room: the claim rounds of one loop turn."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...protocol import DropSite, DropSiteError
from ..agents.agent_group import AgentGroup
from ..context import log_limited


def dispatch(ds: DropSite, groups: Mapping[str, AgentGroup],
             running: Callable[[str], bool], claim_ahead: bool = True) -> None:
    """Hand tasks to free agents until none can take more; claims are the only I/O.

    Idle processes of every agent are served first, round-robin; only then do
    agents with short tasks claim one ahead per process (prefetch_slots), unless
    `claim_ahead` is off (a shared file system: a task held behind a busy process is
    one another host could run now). `running(task_id)`: a process of ours runs it.
    """
    for prefetch in (False, True) if claim_ahead else (False,):
        if not _round(ds, groups, prefetch, running):
            return


def _round(ds: DropSite, groups: Mapping[str, AgentGroup], prefetch: bool,
           running: Callable[[str], bool]) -> bool:
    """One claim per agent with room, round after round; False on a claim error."""
    progress = True
    declared = frozenset(t for g in groups.values() for t in (g.spec.tags or ()))
    while progress:
        progress = False
        for group in list(groups.values()):
            room = group.prefetch_slots() if prefetch else group.free_slots()
            if not group.takes_tasks() or room <= 0:
                continue
            try:
                # An agent without tags takes what no other agent's tags claim
                # (MANIFEST.md), and whatever is assigned to it by name.
                task = ds.claim_next(group.name, group.tags, refresh=False, by_name=True,
                                     exclude_tags=None if group.tags else declared)
            except (DropSiteError, OSError) as exc:
                log_limited("dispatch", f"cannot claim tasks: {exc}")
                return False
            if task is not None and running(task.id):
                # Its earlier claim was taken over (another host reaped it during a
                # partition) while its process still runs here: one run at a time.
                ds.unclaim(task)
            elif task is not None:
                group.assign(task)
                progress = True
    return True
