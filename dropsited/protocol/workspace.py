"""`DropSite`: the task operations of the reference page, on top of TaskStore.

This module decides *what* a task becomes (history entries, retries, backoff);
store.py alone decides *how* files move, dispatch.py which task an agent gets next,
reaper.py when a claim is taken back, agents.py what the registry holds.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Container, Iterator
from pathlib import Path
from typing import Any

from .agents import AgentRegistry
from .at_rest import AtRestMoves
from .dispatch import InboxDispatcher
from .errors import (
    ClaimLost,
    DropSiteError,
    InvalidArgument,
    NotAWorkspace,
)
from .holder import Holder, process_start, this_host
from .hosts import HostRegistry, HostView
from .index import FolderIndex
from .listing import list_folder
from .names import check_agent_name, check_task_id
from .reaper import Reaper
from .retry_policy import DEFAULT_BASE, DEFAULT_CAP, retry_delay
from .store import (
    DEFAULT_MAX_TASK_BYTES,
    META_FOLDERS,
    TASK_FOLDERS,
    BadFile,
    Located,
    StorageError,
    TaskStore,
    UnsafeWorkspace,
)
from .task import Task, utcnow_iso
from .workspace_args import need_task, need_text, rollback, tag_set

DEFAULT_GRACE = 30.0


class DropSite(AtRestMoves):
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
                 rand: Callable[[], float] = random.random, shared: bool | None = None) -> None:
        if not isinstance(workspace, (str, os.PathLike)):
            raise InvalidArgument(f"workspace must be a path, got {type(workspace).__name__}")
        self.workspace = Path(workspace)
        # `shared`: whether other hosts may share the file system (None: from the mount);
        # it changes the commit point of every move (store.py).
        self.store = TaskStore(self.workspace, durable=durable, max_task_bytes=max_task_bytes,
                               shared=shared)
        if create:
            self._create()
        elif not self.store.is_workspace():
            problems = self.store.layout_problems() if self.workspace.is_dir() else []
            if problems:
                raise UnsafeWorkspace(problems[0])
            raise NotAWorkspace(
                f"{self.workspace}: not a DropSite workspace (no inbox/ active/ done/ ...); "
                f"create one with: dropsited init {self.workspace}")
        self.durable = durable
        self.corrupt_grace = corrupt_grace
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.clock = clock
        self.rand = rand
        self.dispatcher = InboxDispatcher(self.store, corrupt_grace, clock)
        self.reaper = Reaper(self.store, clock, self.dispatcher.note)
        self.agents = AgentRegistry(self.store)
        self.hosts = HostRegistry(self.store)
        self._holders: dict[str, Holder] = {}

    def _create(self) -> None:
        try:
            self.store.create_layout()
        except OSError as exc:
            raise StorageError(f"{self.workspace}: cannot create the workspace: "
                               f"{exc.strerror or exc}", exc.errno) from None
        with contextlib.suppress(OSError):  # a read-only workspace is refused at its first write
            fd = self.store.root_fd()
            mode = os.fstat(fd).st_mode
            if mode & 0o022:
                os.fchmod(fd, mode & 0o7755)

    # -- submitting -----------------------------------------------------------
    def submit(self, task: Task) -> str:
        """Drop a task into inbox/; refuses an id any folder already holds, and anything a
        reader would refuse (InvalidTask), before writing anything."""
        need_task("submit", task)
        check_task_id(task.id)
        Task.from_dict(task.to_dict())  # the same validation a reader applies
        extra = {}
        if task.submit_delay:
            extra["not_before"] = utcnow_iso(self.clock() + task.submit_delay)
        with rollback(task):
            task.log("inbox", **extra)
            self.store.create("inbox", task)
        self.dispatcher.note(task.id)
        return task.id

    # -- claiming -------------------------------------------------------------
    def claim(self, agent_name: str, task_id: str, holder_pid: int | None = None) -> Task | None:
        """Take inbox/<id>.json for `agent_name`, whatever its not-before time (a claim by
        id is explicit; `claim_next` honours backoffs and delays). None if another
        claimer won or its dependencies are not done. `holder_pid`: the process that
        holds it instead of this one (0: a person, reaped only by age)."""
        return self._claim(agent_name, task_id, holder_pid, honour_not_before=False)

    def _claim(self, agent_name: str, task_id: str, holder_pid: int | None = None,
               honour_not_before: bool = True) -> Task | None:
        check_agent_name(agent_name)
        check_task_id(task_id)
        if holder_pid is not None and (type(holder_pid) is not int or holder_pid < 0):
            raise InvalidArgument(f"holder_pid must be a process id, got {holder_pid!r}")
        holder = (self._holder(agent_name) if holder_pid is None
                  else Holder.current(agent_name, pid=holder_pid))
        name = self.store.claim(task_id, holder)
        if name is None:
            return None
        try:
            task = self.store.load_entry("active", name)
        except BadFile as exc:
            self.store.quarantine("active", name, exc.reason)
            return None
        except FileNotFoundError:
            return None
        if not self.dispatcher.ready(task, honour_not_before):
            self.store.unclaim(name, task_id)  # nothing was written: put it back as it was
            return None
        return task

    def claim_next(self, agent_name: str, tags: list[str] | None = None,
                   refresh: bool = True, by_name: bool = False,
                   exclude_tags: Container[str] | None = None) -> Task | None:
        """The best task this agent may take now, claimed; None when there is none.

        Order and routing are 0.1.0's (assigned_to, tags, priority, creation
        time); not-before times and dependencies are honoured. `refresh=False`
        trusts the index as it is (the daemon keeps it current from file-system
        events instead of rescanning the folder for every claim). `by_name=True`
        also takes tasks assigned to this agent that lack its tags, and
        `exclude_tags` leaves tasks carrying any of those tags to others (the
        daemon's rules for an agent without tags: PROTOCOL.md §5).
        """
        check_agent_name(agent_name)
        wanted = tag_set("tags", tags)
        exclude = tag_set("exclude_tags", exclude_tags)
        return self.dispatcher.next(agent_name, wanted, by_name, exclude, refresh,
                                    lambda tid: self._claim(agent_name, tid),
                                    lambda task: self.store.unclaim(self._held(task)[1], task.id))

    def unclaim(self, task: Task) -> bool:
        """Put a claimed task back into inbox/ exactly as it was (the claim wrote nothing):
        for a claimer that finds it cannot take the task after all."""
        need_task("unclaim", task)
        return self.store.unclaim(self._held(task)[1], task.id)

    def inbox_index(self) -> FolderIndex:
        return self.dispatcher.index()

    def sweep_inbox(self) -> list[str]:
        """Quarantine inbox entries that stayed unreadable past the grace period."""
        return self.dispatcher.sweep()

    def _holder(self, agent: str) -> Holder:
        pid = os.getpid()
        cached = self._holders.get(agent)
        if cached is None or cached.pid != pid:
            cached = Holder(agent, this_host(), pid, process_start(pid) or 0, 0)
            self._holders[agent] = cached
        return Holder(agent, cached.host, pid, cached.start, int(self.clock() * 1000))

    # -- finishing a held task -------------------------------------------------
    def complete(self, task: Task, result: Any = None, **entry: Any) -> None:
        """active/ -> done/ with `result` (a non-object result is wrapped as {"value": ...}).

        InvalidTask (and the task unchanged, still held) when the result cannot be
        stored: NaN or Infinity, a lone surrogate, over the size limit."""
        need_task("complete", task)
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        with rollback(task):
            task.result = result
            task.log("done", **entry)
            self._leave_active(task, "done")

    def fail(self, task: Task, error: str, *, tempfail: bool = False,
             details: dict | None = None) -> str:
        """Record a failed attempt: back to inbox/ after a backoff, or failed/ when out of retries.

        `tempfail=True` (an agent's exit 75) requeues without using an attempt.
        `details` (exit status, stderr tail) go into the history entry.
        Returns the folder the task went to.
        """
        need_task("fail", task)
        error = need_text("fail", "error", error)
        extra = dict(details or {})
        with rollback(task):
            self._restore_assignment(task)
            if tempfail:
                waits = sum(1 for e in task.history if e.get("tempfail"))
                delay = retry_delay(waits + 1, self.rand(), self.retry_base, self.retry_cap)
                task.log("inbox", tempfail=True, error=error, **extra, not_before=self._later(delay))
                return self._leave_active(task, "inbox")
            task.retry_count += 1
            if task.retry_count <= task.max_retries:
                delay = retry_delay(task.retry_count, self.rand(), self.retry_base, self.retry_cap)
                task.log("retry", error=error, attempt=task.retry_count,
                         not_before=self._later(delay), **extra)
                return self._leave_active(task, "inbox")
            task.log("failed", error=error, **extra)
            return self._leave_active(task, "failed")

    def release(self, task: Task, reason: str = "released", **extra: Any) -> None:
        """Give a held task back to inbox/ at once without using an attempt (a clean stop)."""
        need_task("release", task)
        reason = need_text("release", "reason", reason)
        with rollback(task):
            self._restore_assignment(task)
            task.log("inbox", released=True, reason=reason, **extra)
            self._leave_active(task, "inbox")

    def request_feedback(self, task: Task, question: Any) -> None:
        """active/ -> feedback/ with the question in context["_feedback_request"]."""
        need_task("request_feedback", task)
        with rollback(task):
            task.context["_feedback_request"] = question
            task.log("feedback")
            self._leave_active(task, "feedback")

    def block(self, task: Task, reason: str, **entry: Any) -> None:
        need_task("block", task)
        reason = need_text("block", "reason", reason)
        with rollback(task):
            task.log("blocked", reason=reason, **entry)
            self._leave_active(task, "blocked")

    def _later(self, delay: float) -> str:
        return utcnow_iso(self.clock() + delay)

    @staticmethod
    def _restore_assignment(task: Task) -> None:
        if task.holder is not None:
            task.assigned_to = task.assigned_before_claim

    def _held(self, task: Task) -> tuple[str, str]:
        """(folder, name) of the file a held task is in: the one place its name is built."""
        if task.holder is not None:
            return "active", task.holder.file_name(task.id)
        found = self.store.locate(task.id, ("active",))
        return "active", found.name if found else f"{task.id}.json"

    def held_path(self, task: Task) -> Path:
        """The path of a held task's file (an exec agent's `{task_file}`), named by `_held`."""
        return self.store.path(*self._held(task))

    def _leave_active(self, task: Task, dest: str) -> str:
        check_task_id(task.id)  # a hand-made Task(id="../x") must not name a path
        try:
            self.store.move(self._held(task), dest, task, held=True)
            if dest == "inbox":
                self.dispatcher.note(task.id)
        except ClaimLost:
            self.store.log_late_result({
                "task_id": task.id, "at": utcnow_iso(), "outcome": dest,
                "agent": task.holder.agent if task.holder else task.assigned_to,
                "entry": task.history[-1], "result": task.result,
            })
            raise
        task.holder = None
        return dest

    # -- reading ----------------------------------------------------------------
    def list_tasks(self, folder: str, agent: str | None = None,
                   tags: list[str] | None = None) -> list[Task]:
        """Tasks in a folder, 0.1.0's filters and order; unreadable files are skipped."""
        return list_folder(self.store, folder, agent, tag_set("tags", tags))

    def get_task(self, task_id: str) -> Task | None:
        found = self.locate(task_id)
        if found is None:
            return None
        try:
            return self.store.load_entry(found.folder, found.name)
        except (FileNotFoundError, BadFile):
            return None

    def locate(self, task_id: str) -> Located | None:
        """Where the task is now. A reader can look between two steps of a move (the
        source committed, the new name not yet given; or the folders scanned in one
        order while the task moves the other way), so a miss is looked again twice,
        a few milliseconds apart, before it is believed."""
        check_task_id(task_id)
        for pause in (0.002, 0.02, None):
            found = self.store.locate(task_id)
            if found is not None or pause is None:
                return found
            time.sleep(pause)
        return None

    def stats(self) -> dict[str, int]:
        """Task count per folder (0.1.0's six keys)."""
        return {folder: sum(1 for e in self.store.entries(folder)
                            if e.name.endswith(".json") and not e.name.startswith("."))
                for folder in TASK_FOLDERS}

    def quarantined(self) -> list[dict]:
        return self.store.quarantined()

    # -- agents -----------------------------------------------------------------
    def register_agent(self, name: str, role: str = "worker", **meta: Any) -> None:
        self.agents.register(name, role, **meta)

    def heartbeat(self, name: str, **fields: Any) -> None:
        self.agents.heartbeat(name, **fields)

    def read_agent_record(self, name: str) -> dict | None:
        return self.agents.read(name)

    def write_agent_record(self, name: str, record: dict) -> None:
        self.agents.write(name, record)

    def list_agents(self) -> list[dict]:
        return self.agents.list()

    # -- reaping ----------------------------------------------------------------
    def reap_stale(self, timeout_seconds: float = 300) -> list[str]:
        """Requeue tasks whose holder died, and those held longer than the timeout
        whose holder cannot be shown to be alive (other hosts, 0.1.0 claims, people).

        A live local holder is never reaped here, however long its task runs:
        0.1.0's age-only reaper handed a long task out twice (defect 4). The
        explicit override is `reap(stale, include_live=True)` (`dropsited reap --stale`).
        """
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)):
            raise InvalidArgument(f"timeout_seconds must be a number, got {timeout_seconds!r}")
        return [task_id for task_id, _ in self.reap(stale=timeout_seconds)]

    def reap(self, stale: float | None = None, include_live: bool = False,
             hosts: HostView | None = None) -> list[tuple[str, str]]:
        """Requeue (or fail, when out of attempts) tasks whose holder is gone.

        Returns (task id, reason) pairs. `include_live` also takes tasks from
        live holders older than `stale`: a human's explicit override. `hosts`: the
        other hosts' leases (`self.hosts.view()`), which judge their claims.
        """
        return self.reaper.reap(stale, include_live, hosts)

    def release_held_by(self, pid: int, reason: str, keep: Container[str] = (),
                        host: str | None = None) -> Iterator[tuple[str, Exception | None]]:
        """Give back, unused, every task that process `pid` (of this host) holds, except
        `keep`: (task id, the error if it could not be released) for each."""
        for task_id, task in self.reaper.held_by(pid, host, keep):
            try:
                self.release(task, reason)
            except (DropSiteError, OSError) as exc:
                yield task_id, exc
            else:
                yield task_id, None

    def recover(self) -> list[str]:
        """Finish moves that dead writers left half done, then requeue dead holders' tasks."""
        actions = self.store.recover_temp_files()
        actions += [f"reaped {tid} ({why})" for tid, why in self.reap()]
        return actions

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
