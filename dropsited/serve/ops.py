"""The workspace as the MCP server and the review page see it: thin calls into DropSite.

Everything a client sends is untrusted: each function checks its arguments and
raises DropSiteError (or InvalidName, InvalidTask) with a one-line message that
names the field. Tasks claimed here are held by this process (holder pid = our
pid), so only this process may finish them, the daemon's reaper returns them if
we die, and `release_mine` gives them back when a client goes away.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ..protocol import DropSite, DropSiteError, Task, TaskBuilder, TaskNotFound
from ..protocol.holder import this_host
from ..protocol.names import check_agent_name, check_task_id
from ..protocol.store import TASK_FOLDERS, BadFile
from . import people

MAX_LIST = 500
SUMMARY_KEYS = ("id", "title", "status", "priority", "assigned_to", "created_by", "tags",
                "updated_at")


def task_view(task: Task, folder: str) -> dict:
    """A task for a client: its folder and the document as it is on disk."""
    return {"folder": folder, "task": task.to_dict()}


def summary(task: Task, folder: str) -> dict:
    return {"folder": folder, **{k: getattr(task, k) for k in SUMMARY_KEYS}}


def json_object(value: Any, field: str, *, allow_none: bool = True) -> dict | None:
    """An object given as such or as JSON text (models often send the text); None allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise DropSiteError(f"{field}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DropSiteError(f"{field}: expected a JSON object, got {type(value).__name__}")
    return value


def _no_constant(token: str) -> None:
    raise ValueError(f"{token} is not JSON")


def str_list(value: Any, field: str, check=None) -> list[str]:
    """A list of strings (or one string, or None for none), each checked by `check`."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise DropSiteError(f"{field}: expected a list of strings")
    return [check(i) if check else i for i in items]


class Workspace:
    """One DropSite behind a lock: client calls arrive on several threads, and the
    inbox index behind claim_next is not thread-safe."""

    def __init__(self, path: Path, durable: bool = True) -> None:
        self.ds = DropSite(path, durable=durable, create=False)
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.host = this_host()

    # -- reading ----------------------------------------------------------------
    def show(self, task_id: str) -> dict:
        found = self.ds.locate(check_task_id(task_id))
        if found is None:
            raise TaskNotFound(f"no task {task_id} in the workspace")
        try:
            task = self.ds.store.load(found.path)
        except BadFile as exc:
            raise DropSiteError(f"task {task_id} is unreadable: {exc.reason}") from None
        view = task_view(task, found.folder)
        if task.holder is not None:
            h = task.holder
            view["held_by"] = {"agent": h.agent, "host": h.host, "pid": h.pid,
                               "by_this_server": self._mine(h)}
        return view

    def find(self, folder: str | None = None, tag: str | None = None, agent: str | None = None,
             text: str | None = None, limit: int = 50) -> list[dict]:
        """Task summaries, best first per folder: folder, tag, agent (assigned, creator or
        holder) and a case-insensitive text in title, description, context or result."""
        if folder is not None and folder not in TASK_FOLDERS:
            raise DropSiteError(f"folder: {folder!r} is not one of {', '.join(TASK_FOLDERS)}")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise DropSiteError(f"limit: expected 1 to {MAX_LIST}, got {limit!r}")
        needle = text.lower() if text else None
        hits = []
        for name in [folder] if folder else TASK_FOLDERS:
            for task in self.ds.list_tasks(name, tags=[tag] if tag else None):
                if agent and agent not in (task.assigned_to, task.created_by,
                                           task.holder.agent if task.holder else None):
                    continue
                if needle and needle not in _searchable(task):
                    continue
                hits.append(summary(task, name))
                if len(hits) >= limit:
                    return hits
        return hits

    def stats(self) -> dict:
        counts = self.ds.stats()
        counts["quarantine"] = len(self.ds.quarantined())
        return counts

    def agents(self) -> dict:
        from ..daemon.status import daemon_running, read_daemon_record

        running = daemon_running(self.ds.workspace)
        record = read_daemon_record(self.ds.workspace) or {}
        keys = ("name", "mode", "state", "pids", "restarts", "tasks_done", "tasks_failed",
                "running", "last_error", "last_seen")
        return {"daemon": {"running": running, "pid": record.get("pid") if running else None},
                "agents": [{k: a.get(k) for k in keys if k in a} for a in self.ds.list_agents()]}

    # -- dropping ---------------------------------------------------------------
    def drop(self, title: Any, created_by: Any = "mcp", *, description: Any = "",
             assigned_to: Any = None, priority: Any = 5, tags: Any = None, context: Any = None,
             parent_id: Any = None, max_retries: Any = 3, depends_on: Any = None,
             delay_seconds: Any = 0, task_id: Any = None) -> dict:
        if not isinstance(title, str) or not title.strip():
            raise DropSiteError("title: a non-empty string is required")
        builder = TaskBuilder(title, check_agent_name(created_by))
        builder.describe(_typed(description, str, "description"))
        builder.priority(_typed(priority, int, "priority"))
        builder.max_retries(_typed(max_retries, int, "max_retries"))
        builder.delay(_typed(delay_seconds, (int, float), "delay_seconds"))
        builder.context(json_object(context, "context") or {})
        builder.tag(*str_list(tags, "tags"))
        if assigned_to:
            builder.assign(assigned_to)
        if parent_id:
            builder.parent(parent_id)
        deps = str_list(depends_on, "depends_on", check_task_id)
        if deps:
            builder.depends_on(*deps)
        if task_id:
            builder.with_id(task_id)
        task = builder.build()
        with self.lock:
            self.ds.submit(task)
        return task_view(task, "inbox")

    # -- claims held by this process -------------------------------------------
    def claim_next(self, agent: str, tags: Any = None) -> Task | None:
        """The best task for `agent`, held by this process; a task assigned to the agent by
        name is its whatever its tags (the daemon's rule)."""
        wanted = str_list(tags, "tags") or None
        with self.lock:
            return self.ds.claim_next(check_agent_name(agent), wanted, by_name=True)

    def held(self, task_id: str) -> Task:
        """A task this process holds, or an error that says who holds it instead."""
        found = self.ds.locate(check_task_id(task_id))
        if found is None:
            raise TaskNotFound(f"no task {task_id} in the workspace")
        if found.folder != "active":
            raise DropSiteError(f"task {task_id} is in {found.folder}/, not held (claim it first)")
        if found.holder is None or not self._mine(found.holder):
            who = (f"{found.holder.agent} (pid {found.holder.pid} on {found.holder.host})"
                   if found.holder else "an 0.1.0 agent")
            raise DropSiteError(f"task {task_id} is held by {who}, not by this server: only "
                                "tasks claimed through this server can be finished here")
        return self.ds.store.load(found.path)

    def _mine(self, holder: Any) -> bool:
        return holder.pid == self.pid and holder.host == self.host

    def complete(self, task_id: str, result: Any) -> dict:
        value = json_object(result, "result") or {}
        with self.lock:
            task = self.held(task_id)
            self.ds.complete(task, value)
        return task_view(task, "done")

    def fail(self, task_id: str, error: Any) -> dict:
        message = _required_text(error, "error")
        with self.lock:
            task = self.held(task_id)
            folder = self.ds.fail(task, message)
        return task_view(task, folder)

    def block(self, task_id: str, reason: Any) -> dict:
        message = _required_text(reason, "reason")
        with self.lock:
            task = self.held(task_id)
            self.ds.block(task, message)
        return task_view(task, "blocked")

    def release(self, task_id: str, reason: str = "released by an MCP client") -> dict:
        with self.lock:
            task = self.held(task_id)
            self.ds.release(task, reason)
        return task_view(task, "inbox")

    def request_feedback(self, task_id: str, question: Any, options: Any = None,
                         draft: Any = None) -> dict:
        request: dict[str, Any] = {"question": _required_text(question, "question")}
        if options is not None:
            request["options"] = str_list(options, "options")
        if draft is not None:
            request["draft"] = _typed(draft, str, "draft")
        with self.lock:
            task = self.held(task_id)
            self.ds.request_feedback(task, request)
        return task_view(task, "feedback")

    def answer_feedback(self, task_id: str, answer: Any, by: Any) -> dict:
        if answer is None or answer == "":
            raise DropSiteError("answer: required (text, or any JSON value)")
        with self.lock:
            task = people.answer_feedback(self.ds, task_id, answer, people.check_person(by))
        return task_view(task, "inbox")

    def release_mine(self, task_ids: list[str] | None = None,
                     reason: str = "MCP client went away") -> list[str]:
        """Give back to inbox/ the tasks this process holds (all, or those of `task_ids`)."""
        keep = () if task_ids is None else _AllBut(task_ids)
        with self.lock:
            return [task_id for task_id, error in
                    self.ds.release_held_by(self.pid, reason, keep, self.host) if error is None]


class _AllBut:
    """The `keep` of DropSite.release_held_by that keeps every id except some."""

    def __init__(self, released: list[str]) -> None:
        self.released = frozenset(released)

    def __contains__(self, task_id: object) -> bool:
        return task_id not in self.released


def _typed(value: Any, kind: type | tuple, field: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DropSiteError(f"{field}: expected {names}, got {type(value).__name__}")
    return value


def _required_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DropSiteError(f"{field}: a non-empty string is required")
    return value


def _searchable(task: Task) -> str:
    parts = [task.title, task.description, json.dumps(task.context, ensure_ascii=False, default=str)]
    if task.result is not None:
        parts.append(json.dumps(task.result, ensure_ascii=False, default=str))
    return "\n".join(parts).lower()
