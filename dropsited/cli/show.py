"""How `show` renders a task: a header, its chain (parents, children, dependencies), a timeline."""

from __future__ import annotations

import json

from ..protocol import DropSite
from ..protocol.store import TASK_FOLDERS
from ..protocol.task import Task
from .common import clip, short_time, visible

_SKIP = {"status", "at"}


def render_task(ds: DropSite, task: Task, folder: str) -> str:
    v = visible
    lines = [
        f"{task.id}  {v(task.title)}",
        f"  folder    {folder}/   status {v(task.status)}   priority {task.priority}"
        f"   attempts {task.retry_count}/{task.max_retries}",
        f"  from      {v(task.created_by)}   assigned {v(task.assigned_to or '-')}"
        f"   tags {v(','.join(task.tags)) or '-'}",
    ]
    if task.holder is not None:
        h = task.holder
        lines.append(f"  held by   {v(h.agent)} (pid {h.pid} on {v(h.host)}) since "
                     f"{short_time_ms(h.claimed_ms)}")
    if task.description:
        lines.append(f"  about     {clip(task.description, 100)}")
    context = {k: v for k, v in task.context.items()}
    if context:
        lines.append(f"  context   {clip(json.dumps(context, ensure_ascii=False), 160)}")
    if task.result is not None:
        lines.append(f"  result    {clip(json.dumps(task.result, ensure_ascii=False), 160)}")
    lines += render_chain(ds, task)
    lines.append("history")
    for entry in task.history:
        details = " ".join(f"{v(k)}={v(_fmt(x))}" for k, x in entry.items() if k not in _SKIP)
        status = v(entry.get("status", "?"))
        lines.append(f"  {v(short_time(entry.get('at')))}  {status:<9} {details}".rstrip())
    return "\n".join(lines)


def render_chain(ds: DropSite, task: Task) -> list[str]:
    """Parents up the chain, then this task with its dependencies, dependents and children.

    chain
      A 'research' [done]
      └─ B 'write' [active]  <- this task
         ├─ needs C 'fetch images' [inbox]
         ├─ needed by E 'publish' [inbox]
         └─ D 'edit' [inbox]
    """
    parents, seen, current = [], {task.id}, task.parent_id
    while current and current not in seen and len(parents) < 20:
        seen.add(current)
        parent = ds.get_task(current)
        parents.append((current, parent))
        current = parent.parent_id if parent else None
    related = _related(ds, task)
    items = [f"needs {_label(ds, dep, ds.get_task(dep))}" for dep in task.depends_on]
    items += [f"needed by {_label(ds, t.id, t)}" for t in related["dependents"]]
    items += [_label(ds, t.id, t) for t in related["children"]]
    if not (parents or items):
        return []
    lines = ["chain"]
    for depth, (pid, parent) in enumerate(reversed(parents)):
        lines.append(f"  {_branch(depth)}{_label(ds, pid, parent)}")
    depth = len(parents)
    lines.append(f"  {_branch(depth)}{_label(ds, task.id, task)}  <- this task")
    pad = "   " * depth
    for n, item in enumerate(items):
        lines.append(f"  {pad}{'└─' if n == len(items) - 1 else '├─'} {item}")
    return lines


def _branch(depth: int) -> str:
    return "" if depth == 0 else "   " * (depth - 1) + "└─ "


def _related(ds: DropSite, task: Task) -> dict[str, list[Task]]:
    """Tasks chained from this one (parent_id) and tasks waiting for it (depends_on)."""
    found: dict[str, list[Task]] = {"children": [], "dependents": []}
    for folder in TASK_FOLDERS:
        for other in ds.list_tasks(folder):
            if other.parent_id == task.id:
                found["children"].append(other)
            elif task.id in other.depends_on:
                found["dependents"].append(other)
    return found


def _label(ds: DropSite, task_id: str, task: Task | None) -> str:
    if task is None:
        return f"{task_id} (not found)"
    where = ds.locate(task_id)
    return f"{task_id} {clip(task.title, 40)!r} [{where.folder if where else '?'}]"


def short_time_ms(ms: int) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _fmt(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
