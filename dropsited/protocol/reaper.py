"""Taking tasks back from holders that are gone (PROTOCOL.md §6, reaping).

A live holder on this host is never reaped: 0.1.0's age-only reaper handed a long
task out twice (defect 4). A holder on another host that keeps a lease (hosts.py) is
judged by it: reaped once the lease expired or the host booted after the claim, never
by age while the lease is fresh. Holders nobody can judge (a host without a daemon, a
person, a 0.1.0 claim) are reaped by age only.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from .errors import DropSiteError, TaskNotFound
from .holder import Holder, parse_active_name, process_start, this_host
from .hosts import HostView
from .store import BadFile, TaskStore
from .task import Task, parse_iso


class Reaper:
    """Requeues (or fails, when out of attempts) the tasks of holders that are gone."""

    def __init__(self, store: TaskStore, clock: Callable[[], float],
                 note_inbox: Callable[[str], None]) -> None:
        self.store = store
        self.clock = clock
        self.note_inbox = note_inbox

    def reap(self, stale: float | None = None, include_live: bool = False,
             hosts: HostView | None = None) -> list[tuple[str, str]]:
        """(task id, reason) of each task taken back from a gone holder.

        `stale`: also take claims older than this from holders that cannot be checked;
        `include_live`: also from live ones (a human's explicit override); `hosts`: the
        leases of other hosts, which judge their claims."""
        reaped = []
        now = self.clock()
        for entry in list(self.store.entries("active")):
            parsed = parse_active_name(entry.name)
            if parsed is None:
                continue
            reason = self._reason(entry.name, parsed[1], stale, include_live, now, hosts)
            if reason and self._reap_one(entry.name, reason):
                reaped.append((parsed[0], reason))
        return reaped

    def held_by(self, pid: int, host: str | None = None,
                keep: Container[str] = ()) -> list[tuple[str, Task]]:
        """The tasks in active/ held by process `pid` of `host` (this host by default, and
        then only by that very process: its start time too), except the ids in `keep`:
        what a stopping daemon gives back. Never another host's, whatever its pid (pid 1
        in every container)."""
        mine = host is None
        host = this_host() if host is None else host
        start = process_start(pid) if mine else None
        found = []
        for entry in list(self.store.entries("active")):
            parsed = parse_active_name(entry.name)
            if not parsed or parsed[1] is None or parsed[0] in keep:
                continue
            holder = parsed[1]
            if holder.pid != pid or holder.host != host or (start and holder.start != start):
                continue
            try:
                found.append((parsed[0], self.store.load_entry("active", entry.name)))
            except (FileNotFoundError, DropSiteError):
                continue
        return found

    def _reason(self, name: str, holder: Holder | None, stale: float | None,
                include_live: bool, now: float, hosts: HostView | None) -> str | None:
        alive = holder.is_alive() if holder else None
        if alive is False:
            return "holder_dead"
        if alive is None and holder is not None and holder.pid != 0 and hosts is not None \
                and hosts.has(holder.host):
            gone = hosts.claim_gone(holder.host, holder.claimed_at)
            if gone or not include_live:
                return gone  # a fresh lease: alive, whatever the claim's age
        if stale is None or (alive and not include_live):
            return None
        claimed = holder.claimed_at if holder else self._claimed_at(name)
        if claimed is not None and now - claimed > stale:
            return "stale_timeout"
        return None

    def _claimed_at(self, name: str) -> float | None:
        """When a 0.1.0-style claim (`active/<id>.json`) was made.

        0.1.0 renames first and records the claim afterwards, so a crash in
        between leaves a task whose last history entry is not `active`
        (defect 3). Its claim time is then the rename itself, which set the
        file's ctime; without this fallback such a task was never reaped.
        """
        try:
            task = self.store.load_entry("active", name)
            info = self.store.lstat("active", name)
        except (FileNotFoundError, BadFile):
            return None
        if info is None:
            return None
        if task.history and task.history[-1].get("status") == "active":
            return parse_iso(task.history[-1].get("at", "")) or info.st_ctime
        return info.st_ctime

    def _reap_one(self, name: str, reason: str) -> bool:
        try:
            task = self.store.load_entry("active", name)
        except FileNotFoundError:
            return False
        except BadFile as exc:
            self.store.quarantine("active", name, exc.reason)
            return False
        holder = task.holder
        detail = {"reaped": True, "reason": reason}
        if holder is not None:
            detail["holder"] = f"{holder.agent} pid {holder.pid} on {holder.host}"
            task.assigned_to = task.assigned_before_claim
        task.retry_count += 1
        if task.retry_count > task.max_retries:
            task.log("failed", error=f"reaped after {task.retry_count - 1} retries: {reason}", **detail)
            dest = "failed"
        else:
            task.log("inbox", attempt=task.retry_count, **detail)
            dest = "inbox"
        try:
            self.store.move(("active", name), dest, task, held=False)
        except TaskNotFound:
            return False
        if dest == "inbox":
            self.note_inbox(task.id)
        return True
