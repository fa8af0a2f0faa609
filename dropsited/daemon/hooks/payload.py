"""The event a hook receives (docs/HOOKS.md): one JSON object, its one-line summary, the
DROPSITED_* variables of a command hook, and which hooks an event matches.

Everything here comes from task files and agent output, so it is untrusted: strings
are cut to a bound, a result or question larger than MAX_VALUE_BYTES is replaced by a
note of its size, and no value ever reaches a command line (stdin and environment only).
"""

from __future__ import annotations

import os
from typing import Any

from ...protocol import json_rules
from ...protocol.errors import InvalidTask
from ...protocol.holder import this_host
from ...protocol.task import Task, utcnow_iso
from ..manifest import HookSpec

MAX_TEXT = 4096  # one string field (a title, an error, an env value)
MAX_VALUE_BYTES = 64 * 1024  # a result or a question, as JSON
VERSION = 1  # of the payload's layout; bumped when a field changes meaning


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded(value: Any) -> Any:
    """`value` if its JSON is small enough to pass on, else a note of how large it was."""
    try:
        size = len(json_rules.dumps(value, indent=None))
    except (InvalidTask, TypeError, ValueError):
        return {"_dropsited_omitted": "not storable as JSON"}
    return value if size <= MAX_VALUE_BYTES else {"_dropsited_omitted": f"{size} bytes"}


def _base(kind: str, workspace: str, agent: str | None) -> dict[str, Any]:
    return {"version": VERSION, "event": kind, "at": utcnow_iso(), "workspace": workspace,
            "host": this_host(), "daemon_pid": os.getpid(), "agent": agent}


def task_event(kind: str, task: Task, agent: str | None, folder: str, workspace: str,
               error: str = "") -> dict[str, Any]:
    """done, failed, feedback, blocked or late_result of one task."""
    tags = [_text(t, 200) for t in task.tags[:100]] if isinstance(task.tags, list) else []
    event = _base(kind, workspace, agent)
    event.update({
        "task_id": task.id, "folder": folder,
        "task": {"id": task.id, "title": _text(task.title), "created_by": _text(task.created_by),
                 "assigned_to": task.assigned_to, "priority": task.priority, "tags": tags,
                 "status": task.status, "retry_count": task.retry_count,
                 "max_retries": task.max_retries, "parent_id": task.parent_id},
    })
    if error:
        event["error"] = _text(error)
    if kind == "failed":
        event["final"] = folder == "failed"
    if kind in ("done", "late_result"):
        event["result"] = _bounded(task.result)
    if kind == "feedback" and isinstance(task.context, dict):
        event["question"] = _bounded(task.context.get("_feedback_request"))
    event["summary"] = summary(event)
    return event


def quarantine_event(record: dict[str, Any], workspace: str) -> dict[str, Any]:
    """An inbox entry (or a temp file) that could not be read, moved to quarantine/."""
    event = _base("quarantined", workspace, None)
    event.update({"task_id": None, "folder": "quarantine", "file": _text(record.get("file")),
                  "quarantined_as": _text(record.get("quarantined_as")),
                  "error": _text(record.get("error")), "size": record.get("size")})
    event["summary"] = summary(event)
    return event


def agent_event(kind: str, agent: str, workspace: str, fields: dict[str, Any]) -> dict[str, Any]:
    """fatal, restart or memory_restart of one agent's process."""
    event = _base(kind, workspace, agent)
    event.update({"task_id": None, "folder": None})
    event.update({k: _text(v) if isinstance(v, str) else v for k, v in fields.items()})
    event["summary"] = summary(event)
    return event


def summary(event: dict[str, Any]) -> str:
    """One line a person reads in a notification or a chat message."""
    kind, agent = event["event"], event.get("agent")
    task = event.get("task")
    if task is not None:
        head = f"{kind}: {_text(task['title'], 120)!r} ({event['task_id']})"
        head += f" by {agent}" if agent else ""
        if kind == "feedback":
            question = event.get("question")
            if isinstance(question, dict):
                question = question.get("question", question)
            return f"{head} asks: {_text(question, 300)}"
        if kind == "failed":
            head += "" if event.get("final") else " (will be retried)"
        return f"{head}: {_text(event['error'], 300)}" if event.get("error") else head
    if kind == "quarantined":
        return f"quarantined {event['file']}: {_text(event['error'], 300)}"
    why = event.get("reason") or event.get("last_error") or ""
    return f"agent {agent}: {kind}" + (f": {_text(why, 300)}" if why else "")


def environment(event: dict[str, Any], hook: str) -> dict[str, str]:
    """The DROPSITED_* variables of a command hook (no NUL, each cut to MAX_TEXT)."""
    task = event.get("task") or {}
    values = {
        "DROPSITED_EVENT": event["event"], "DROPSITED_HOOK": hook,
        "DROPSITED_WORKSPACE": event["workspace"], "DROPSITE_WORKSPACE": event["workspace"],
        "DROPSITED_AGENT": event.get("agent") or "", "DROPSITED_TASK_ID": event.get("task_id") or "",
        "DROPSITED_FOLDER": event.get("folder") or "", "DROPSITED_TASK_TITLE": task.get("title", ""),
        "DROPSITED_TASK_TAGS": ",".join(task.get("tags", [])),
        "DROPSITED_ERROR": event.get("error") or "", "DROPSITED_SUMMARY": event["summary"],
    }
    return {k: _text(v).replace("\x00", "") for k, v in values.items()}


def matches(hook: HookSpec, event: dict[str, Any]) -> bool:
    """Whether `hook` runs for `event`: one of its events, and every filter it gives.

    `agents` (and a per-agent hook's own agent) must name the event's agent, so an event
    without one (quarantined) never passes it. `folders` and `tags` filter the events
    that have a folder or a task; the others (agent events; quarantined for `tags`) pass.
    """
    if event["event"] not in hook.events:
        return False
    agent = event.get("agent")
    if hook.agent is not None and agent != hook.agent:
        return False
    if hook.agents is not None and agent not in hook.agents:
        return False
    folder = event.get("folder")
    if hook.folders is not None and folder is not None and folder not in hook.folders:
        return False
    task = event.get("task")
    if hook.tags is not None and task is not None:
        return any(tag in hook.tags for tag in task.get("tags", []))
    return True
