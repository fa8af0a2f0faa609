"""`DropSite`: the task operations of the reference page, on top of TaskStore.

This module decides *what* a task becomes (history entries, retries, backoff,
reaping rules); store.py alone decides *how* files move.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ClaimLost, DropSiteError, InvalidTask, NotAWorkspace, TaskNotFound
from .holder import Holder, parse_active_name, process_start, this_host
from .index import FolderIndex, routable
from .names import check_agent_name, check_task_id
from .retry_policy import DEFAULT_BASE, DEFAULT_CAP, retry_delay
from .store import (
    DEFAULT_MAX_TASK_BYTES,
    META_FOLDERS,
    TASK_FOLDERS,
    BadFile,
    Located,
    TaskStore,
    parse_temp_name,
    read_bytes,
    write_file,
)
from .task import Task, parse_iso, utcnow_iso

DEFAULT_GRACE = 30.0


class DropSite:
    """A workspace: seven folders of JSON task files.

    `durable=True` fsyncs every file and folder a task is written to;
    `durable=False` skips fsync (fast; a power cut may lose recent moves).
    """

    TASK_DIRS = list(TASK_FOLDERS)
    META_DIRS = list(META_FOLDERS)
    DIRS = TASK_DIRS + META_DIRS

    def __init__(self, workspace: str | os.PathLike, durable: bool = True, *,
                 create: bool = True, max_task_bytes: int = DEFAULT_MAX_TASK_BYTES,
                 corrupt_grace: float = DEFAULT_GRACE, retry_base: float = DEFAULT_BASE,
                 retry_cap: float = DEFAULT_CAP, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self.workspace = Path(workspace)
        self.store = TaskStore(self.workspace, durable=durable, max_task_bytes=max_task_bytes)
        if create:
            self.store.create_layout()
            os.chmod(self.workspace, os.stat(self.workspace).st_mode & ~0o022)
        elif not self.store.is_workspace():
            raise NotAWorkspace(
                f"{self.workspace}: not a DropSite workspace (no inbox/ active/ done/ ...); "
                f"create one with: dropsited init {self.workspace}")
        self.durable = durable
        self.corrupt_grace = corrupt_grace
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.clock = clock
        self.rand = rand
        self._inbox: FolderIndex | None = None
        self._inbox_owner: int | None = None  # the thread that made (and walks) the index
        self._inbox_pending: deque[str] = deque()  # names noted by other threads
        # claim_next resumes its walk of the index where the previous call of
        # the same (agent, tags) stopped, while the index is unchanged: other
        # agents' tasks at the head of the queue are stepped over once, not on
        # every call (that made draining quadratic in the size of the pile).
        self._walks: dict[tuple, tuple[int, Iterator]] = {}
        self._holders: dict[str, Holder] = {}

    # -- submitting -----------------------------------------------------------
    def submit(self, task: Task) -> str:
        """Drop a task into inbox/; refuses a task whose id is already there."""
        check_task_id(task.id)
        Task.from_dict(task.to_dict())  # the same validation a reader applies
        extra = {}
        if task.submit_delay:
            extra["not_before"] = utcnow_iso(self.clock() + task.submit_delay)
        task.log("inbox", **extra)
        self.store.create("inbox", task)
        self._note_inbox(task.id)
        return task.id

    # -- claiming -------------------------------------------------------------
    def claim(self, agent_name: str, task_id: str, holder_pid: int | None = None) -> Task | None:
        """Take inbox/<id>.json for `agent_name`; None if another claimer won or it is
        not due yet. `holder_pid`: the process that holds it instead of this one
        (0: a person, reaped only by age)."""
        check_agent_name(agent_name)
        check_task_id(task_id)
        src = f"{self.store._dirs['inbox']}/{task_id}.json"
        holder = (self._holder(agent_name) if holder_pid is None
                  else Holder.current(agent_name, pid=holder_pid))
        path = self.store.claim(src, task_id, holder)
        if path is None:
            return None
        try:
            task = self.store.load(path)
        except (BadFile, InvalidTask) as exc:
            self.store.quarantine(path, getattr(exc, "reason", str(exc)))
            return None
        except FileNotFoundError:
            return None
        if not self._ready(task):
            self.store.unclaim(path, task_id)  # nothing was written: put it back as it was
            return None
        return task

    def _ready(self, task: Task) -> bool:
        """Due (its not-before time passed) and every dependency done: may be handed out."""
        # The claim's own `active` entry is last now; the time is on the entry before.
        before = next((e for e in reversed(task.history) if e.get("status") != "active"), {})
        not_before = parse_iso(before.get("not_before") or "")
        if not_before is not None and not_before > self.clock():
            return False
        deps = task.depends_on
        return not deps or self._dependencies_ready(task.id, tuple(deps))

    def claim_next(self, agent_name: str, tags: list[str] | None = None,
                   refresh: bool = True, by_name: bool = False) -> Task | None:
        """The best task this agent may take now, claimed; None when there is none.

        Order and routing are 0.1.0's (assigned_to, tags, priority, creation
        time); not-before times and dependencies are honoured. `refresh=False`
        trusts the index as it is (the daemon keeps it current from file-system
        events instead of rescanning the folder for every claim). `by_name=True`
        also takes tasks assigned to this agent that lack its tags (the daemon's rule).
        """
        check_agent_name(agent_name)
        index = self.inbox_index()
        wanted = frozenset(tags) if tags else None
        scanned = False
        if refresh and index.refresh_due():
            self._quarantine_expired(index.refresh())
            scanned = True
        task = self._claim_first(index, agent_name, wanted, by_name)
        if task is None and refresh and not scanned:
            # Rescanning the folder costs a pass over every name in it, so it is
            # done when the index has nothing left for us (or once a second, via
            # refresh_due), not on every call: 0.1.0's AgentLoop likewise saw
            # new tasks only at its next listing.
            self._quarantine_expired(index.refresh())
            task = self._claim_first(index, agent_name, wanted, by_name)
        return task

    def _claim_first(self, index: FolderIndex, agent_name: str,
                     wanted: frozenset | None, by_name: bool = False) -> Task | None:
        key = (agent_name, wanted, by_name)
        walk = self._walks.pop(key, None)
        if walk is None or walk[0] != index.version:
            walk = (index.version, index.candidates(agent_name, wanted, self.clock(), by_name))
        for entry in walk[1]:
            if entry.depends_on and not self._dependencies_ready(entry.task_id, entry.depends_on):
                continue
            task = self.claim(agent_name, entry.task_id)
            index.discard(entry.name)
            if task is None:
                continue
            if not routable(task.assigned_before_claim, frozenset(task.tags), agent_name, wanted,
                            by_name):
                self.store.unclaim(self._held_path(task), task.id)  # changed since indexed
                continue
            if walk[0] == index.version:
                self._walks[key] = walk
            return task
        return None

    def _note_inbox(self, task_id: str) -> None:
        """Tell our inbox index about a task we just put in inbox/.

        claim_next no longer rescans the folder on every call, so without this a
        task this process submits or requeues would wait for the next rescan.

        The index is not thread-safe, and the daemon finishes tasks in runner
        threads while its main thread walks the index: a thread other than the
        index's owner only queues the name, which the owner observes at its next
        inbox_index() call.
        """
        if self._inbox is None:
            return
        if threading.get_ident() == self._inbox_owner:
            self._inbox.observe(f"{task_id}.json")
        else:
            self._inbox_pending.append(f"{task_id}.json")  # deque.append is thread-safe

    def inbox_index(self) -> FolderIndex:
        if self._inbox is None:
            self._inbox = FolderIndex(self.store, "inbox", self.corrupt_grace, self.clock)
            self._inbox_owner = threading.get_ident()
        if threading.get_ident() == self._inbox_owner:
            while self._inbox_pending:
                self._inbox.observe(self._inbox_pending.popleft())
        return self._inbox

    def _dependencies_ready(self, task_id: str, deps: tuple) -> bool:
        failed = [d for d in deps if os.path.exists(self.workspace / "failed" / f"{d}.json")]
        if failed:
            self._block_for_failed_dependency(task_id, failed[0])
            return False
        return all(os.path.exists(self.workspace / "done" / f"{d}.json") for d in deps)

    def _block_for_failed_dependency(self, task_id: str, dep: str) -> None:
        src = self.workspace / "inbox" / f"{task_id}.json"
        try:
            task = self.store.load(src)
        except (FileNotFoundError, BadFile):
            return
        task.log("blocked", reason=f"dependency {dep} failed")
        with contextlib.suppress(TaskNotFound):
            self.store.move(src, "blocked", task, held=False)

    def _holder(self, agent: str) -> Holder:
        pid = os.getpid()
        cached = self._holders.get(agent)
        if cached is None or cached.pid != pid:
            cached = Holder(agent, this_host(), pid, process_start(pid) or 0, 0)
            self._holders[agent] = cached
        return Holder(agent, cached.host, pid, cached.start, int(self.clock() * 1000))

    # -- finishing a held task -------------------------------------------------
    def complete(self, task: Task, result: Any = None) -> None:
        """active/ -> done/ with `result` (a non-object result is wrapped as {"value": ...})."""
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        task.result = result
        task.log("done")
        self._leave_active(task, "done")

    def fail(self, task: Task, error: str, *, tempfail: bool = False,
             details: dict | None = None) -> str:
        """Record a failed attempt: back to inbox/ after a backoff, or failed/ when out of retries.

        `tempfail=True` (an agent's exit 75) requeues without using an attempt.
        `details` (exit status, stderr tail) go into the history entry.
        Returns the folder the task went to.
        """
        extra = dict(details or {})
        self._restore_assignment(task)
        if tempfail:
            waits = sum(1 for e in task.history if e.get("tempfail"))
            task.log("inbox", tempfail=True, error=error, **extra,
                     not_before=self._later(retry_delay(waits + 1, self.rand(), self.retry_base, self.retry_cap)))
            return self._leave_active(task, "inbox")
        task.retry_count += 1
        if task.retry_count <= task.max_retries:
            delay = retry_delay(task.retry_count, self.rand(), self.retry_base, self.retry_cap)
            task.log("retry", error=error, attempt=task.retry_count,
                     not_before=self._later(delay), **extra)
            return self._leave_active(task, "inbox")
        task.log("failed", error=error, **extra)
        return self._leave_active(task, "failed")

    def release(self, task: Task, reason: str = "released") -> None:
        """Give a held task back to inbox/ at once without using an attempt (a clean stop)."""
        self._restore_assignment(task)
        task.log("inbox", released=True, reason=reason)
        self._leave_active(task, "inbox")

    def request_feedback(self, task: Task, question: Any) -> None:
        """active/ -> feedback/ with the question in context["_feedback_request"]."""
        task.context["_feedback_request"] = question
        task.log("feedback")
        self._leave_active(task, "feedback")

    def block(self, task: Task, reason: str) -> None:
        task.log("blocked", reason=reason)
        self._leave_active(task, "blocked")

    def _later(self, delay: float) -> str:
        return utcnow_iso(self.clock() + delay)

    @staticmethod
    def _restore_assignment(task: Task) -> None:
        if task.holder is not None:
            task.assigned_to = task.assigned_before_claim

    def _held_path(self, task: Task) -> Path | str:
        if task.holder is not None:
            return f"{self.store._dirs['active']}/{task.holder.file_name(task.id)}"
        found = self.store.locate(task.id, ("active",))
        return found.path if found else self.workspace / "active" / f"{task.id}.json"

    def _leave_active(self, task: Task, dest: str) -> str:
        check_task_id(task.id)  # a hand-made Task(id="../x") must not name a path
        try:
            self.store.move(self._held_path(task), dest, task, held=True)
            if dest == "inbox":
                self._note_inbox(task.id)
        except ClaimLost:
            self.store.log_late_result({
                "task_id": task.id, "at": utcnow_iso(), "outcome": dest,
                "agent": task.holder.agent if task.holder else task.assigned_to,
                "entry": task.history[-1], "result": task.result,
            })
            raise
        task.holder = None
        return dest

    # -- moving tasks at rest ---------------------------------------------------
    def respond_feedback(self, task_id: str, response: Any) -> None:
        """feedback/ -> inbox/ with the answer in context["_feedback_response"]."""
        task, path = self._load_from("feedback", task_id)
        task.context["_feedback_response"] = response
        task.log("inbox", feedback_received=True)
        self.store.move(path, "inbox", task, held=False)
        self._note_inbox(task_id)

    def unblock(self, task_id: str, note: str | None = None) -> None:
        task, path = self._load_from("blocked", task_id)
        task.log("inbox", unblocked=True, **({"note": note} if note else {}))
        self.store.move(path, "inbox", task, held=False)
        self._note_inbox(task_id)

    def retry(self, task_id: str) -> None:
        """failed/ -> inbox/ with the attempt count reset, for a human who fixed the cause."""
        task, path = self._load_from("failed", task_id)
        task.retry_count = 0
        task.log("inbox", retried=True)
        self.store.move(path, "inbox", task, held=False)
        self._note_inbox(task_id)

    def _load_from(self, folder: str, task_id: str) -> tuple[Task, Path]:
        check_task_id(task_id)
        path = self.workspace / folder / f"{task_id}.json"
        try:
            return self.store.load(path), path
        except FileNotFoundError:
            where = self.store.locate(task_id)
            hint = f" (it is in {where.folder}/)" if where else ""
            raise TaskNotFound(f"no task {task_id} in {folder}/{hint}") from None

    # -- reading ----------------------------------------------------------------
    def list_tasks(self, folder: str, agent: str | None = None,
                   tags: list[str] | None = None) -> list[Task]:
        """Tasks in a folder, 0.1.0's filters and order; unreadable files are skipped."""
        if folder not in TASK_FOLDERS:
            raise DropSiteError(f"unknown folder {folder!r} (one of: {', '.join(TASK_FOLDERS)})")
        tasks = []
        for entry in self.store.entries(folder):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                task = self.store.load(Path(entry.path))
            except (FileNotFoundError, BadFile, InvalidTask):
                continue
            if agent and task.assigned_to and task.assigned_to != agent:
                continue
            if tags and not any(t in task.tags for t in tags):
                continue
            tasks.append(task)
        # 0.1.0 sorts the file names first, so ties fall back to the id.
        tasks.sort(key=lambda t: (t.priority, t.created_at, t.id))
        return tasks

    def get_task(self, task_id: str) -> Task | None:
        found = self.locate(task_id)
        if found is None:
            return None
        try:
            return self.store.load(found.path)
        except (FileNotFoundError, BadFile):
            return None

    def locate(self, task_id: str) -> Located | None:
        return self.store.locate(check_task_id(task_id))

    def stats(self) -> dict[str, int]:
        """Task count per folder (0.1.0's six keys)."""
        return {folder: sum(1 for e in self.store.entries(folder)
                            if e.name.endswith(".json") and not e.name.startswith("."))
                for folder in TASK_FOLDERS}

    def quarantined(self) -> list[dict]:
        return self.store.quarantined()

    # -- agents -----------------------------------------------------------------
    def register_agent(self, name: str, role: str = "worker", **meta: Any) -> None:
        now = utcnow_iso()
        self.write_agent_record(name, {"name": name, "role": role, "registered_at": now,
                                       "last_seen": now, **meta})

    def heartbeat(self, name: str, **fields: Any) -> None:
        record = self.read_agent_record(name)
        if record is None:
            return
        record.update(fields, last_seen=utcnow_iso())
        self.write_agent_record(name, record)

    def read_agent_record(self, name: str) -> dict | None:
        path = self.workspace / "agents" / f"{check_agent_name(name)}.json"
        try:
            record = json.loads(read_bytes(path, 1 << 20))
        except (FileNotFoundError, ValueError, DropSiteError):
            return None
        return record if isinstance(record, dict) else None

    def write_agent_record(self, name: str, record: dict) -> None:
        folder = self.workspace / "agents"
        final = folder / f"{check_agent_name(name)}.json"
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        write_file(tmp, json.dumps(record, indent=2, default=str).encode(), durable=False)
        os.replace(tmp, final)

    def list_agents(self) -> list[dict]:
        records = []
        for entry in self.store.entries("agents"):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                try:  # read_bytes never opens a FIFO or follows a link
                    record = json.loads(read_bytes(Path(entry.path), 1 << 20))
                except (OSError, ValueError, DropSiteError):
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return sorted(records, key=lambda r: str(r.get("name", "")))

    # -- reaping ----------------------------------------------------------------
    def reap_stale(self, timeout_seconds: float = 300) -> list[str]:
        """Requeue tasks whose holder died, and those held longer than the timeout
        whose holder cannot be shown to be alive (other hosts, 0.1.0 claims, people).

        A live local holder is never reaped here, however long its task runs:
        0.1.0's age-only reaper handed a long task out twice (defect 4). The
        explicit override is `reap(stale, include_live=True)` (`dropsited reap --stale`).
        """
        return [task_id for task_id, _ in self.reap(stale=timeout_seconds)]

    def reap(self, stale: float | None = None, include_live: bool = False) -> list[tuple[str, str]]:
        """Requeue (or fail, when out of attempts) tasks whose holder is gone.

        Returns (task id, reason) pairs. `include_live` also takes tasks from
        live holders older than `stale`: a human's explicit override.
        """
        reaped = []
        now = self.clock()
        for entry in list(self.store.entries("active")):
            parsed = parse_active_name(entry.name)
            if parsed is None:
                continue
            reason = self._reap_reason(Path(entry.path), parsed[1], stale, include_live, now)
            if reason and self._reap_one(Path(entry.path), reason):
                reaped.append((parsed[0], reason))
        return reaped

    def _reap_reason(self, path: Path, holder: Holder | None, stale: float | None,
                     include_live: bool, now: float) -> str | None:
        alive = holder.is_alive() if holder else None
        if alive is False:
            return "holder_dead"
        if stale is None or (alive and not include_live):
            return None
        claimed = holder.claimed_at if holder else self._claimed_at(path)
        if claimed is not None and now - claimed > stale:
            return "stale_timeout"
        return None

    def _claimed_at(self, path: Path) -> float | None:
        """When a 0.1.0-style claim (`active/<id>.json`) was made.

        0.1.0 renames first and records the claim afterwards, so a crash in
        between leaves a task whose last history entry is not `active`
        (defect 3). Its claim time is then the rename itself, which set the
        file's ctime; without this fallback such a task was never reaped.
        """
        try:
            task = self.store.load(path)
            changed = os.lstat(path).st_ctime
        except (FileNotFoundError, BadFile):
            return None
        if task.history and task.history[-1].get("status") == "active":
            return parse_iso(task.history[-1].get("at", "")) or changed
        return changed

    def _reap_one(self, path: Path, reason: str) -> bool:
        try:
            task = self.store.load(path)
        except FileNotFoundError:
            return False
        except BadFile as exc:
            self.store.quarantine(path, exc.reason)
            return False
        holder = task.holder
        detail = {"reaped": True, "reason": reason}
        if holder is not None:
            detail["holder"] = f"{holder.agent} pid {holder.pid} on {holder.host}"
        self._restore_assignment(task)
        task.retry_count += 1
        if task.retry_count > task.max_retries:
            task.log("failed", error=f"reaped after {task.retry_count - 1} retries: {reason}", **detail)
            dest = "failed"
        else:
            task.log("inbox", attempt=task.retry_count, **detail)
            dest = "inbox"
        try:
            self.store.move(path, dest, task, held=False)
        except TaskNotFound:
            return False
        if dest == "inbox":
            self._note_inbox(task.id)
        return True

    def recover(self) -> list[str]:
        """Finish moves that dead writers left half done, then requeue dead holders' tasks."""
        actions = self.store.recover_temp_files()
        actions += [f"reaped {tid} ({why})" for tid, why in self.reap()]
        return actions

    def sweep_inbox(self) -> list[str]:
        """Quarantine inbox entries that stayed unreadable past the grace period."""
        return self._quarantine_expired(self.inbox_index().refresh())

    def _quarantine_expired(self, bad: list) -> list[str]:
        moved = []
        for item in bad:
            if parse_temp_name(item.name):
                continue
            path = self.workspace / "inbox" / item.name
            if self.store.quarantine(path, item.reason) is not None:
                moved.append(f"inbox/{item.name}: {item.reason}")
            if self._inbox is not None:
                self._inbox.bad.pop(item.name, None)
        return moved

    # -- 0.1.0 aliases ----------------------------------------------------------
    drop_task = submit
    claim_task = claim
    complete_task = complete

    def check_inbox(self, agent: str | None = None, **kw: Any) -> list[Task]:
        return self.list_tasks("inbox", agent=agent, **kw)

    def get_completed(self, agent: str | None = None) -> list[Task]:
        return self.list_tasks("done", agent=agent)

    # -- waiting ------------------------------------------------------------------
    def wait(self, task_id: str, timeout: float | None = None,
             until: tuple[str, ...] = ()) -> Task:
        """Block until the task is in done/ or failed/ (or a folder of `until`: feedback,
        blocked) and return it. Raises WaitTimeout (a TimeoutError) after `timeout` seconds,
        TaskNotFound when there is no such task. File-system events when watchdog is
        importable, polling otherwise: see waiting.py."""
        from .waiting import wait_for  # loaded on first use: plain DropSite use never needs it
        return wait_for(self, [task_id], timeout, until)[task_id][1]
