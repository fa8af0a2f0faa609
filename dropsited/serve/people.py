"""What a person does to a task at rest, recorded with the person's name in its history.

`DropSite.respond_feedback`, `unblock` and `retry` take no name (0.1.0's signatures),
and a review page or an MCP client answers for someone: these do the same moves
with `by` in the history entry. They use only the store's public moves, so the
same rules hold: a task is moved from feedback/, blocked/ or failed/ only, never
out of active/ (a live holder's task cannot be taken from it here).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from ..protocol import DropSite, DropSiteError, Task, TaskNotFound
from ..protocol.names import check_task_id

MAX_PERSON = 64


def check_person(name: object) -> str:
    """A person's name as typed (spaces allowed), or DropSiteError naming the field."""
    if not isinstance(name, str) or not name.strip():
        raise DropSiteError("by: the name of the person answering is required")
    name = name.strip()
    if len(name) > MAX_PERSON:
        raise DropSiteError(f"by: at most {MAX_PERSON} characters, got {len(name)}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise DropSiteError("by: control characters are not allowed in a name")
    return name


def answer_feedback(ds: DropSite, task_id: str, answer: Any, by: str) -> Task:
    """feedback/ -> inbox/ with the answer in context._feedback_response (as respond_feedback)."""
    def change(task: Task) -> None:
        task.context["_feedback_response"] = answer
        task.log("inbox", feedback_received=True, by=by)
    return _move_at_rest(ds, "feedback", task_id, change)


def unblock(ds: DropSite, task_id: str, by: str, note: str | None = None) -> Task:
    """blocked/ -> inbox/ (as DropSite.unblock)."""
    def change(task: Task) -> None:
        task.log("inbox", unblocked=True, by=by, **({"note": note} if note else {}))
    return _move_at_rest(ds, "blocked", task_id, change)


def retry(ds: DropSite, task_id: str, by: str) -> Task:
    """failed/ -> inbox/ with the attempts reset (as DropSite.retry)."""
    def change(task: Task) -> None:
        task.retry_count = 0
        task.log("inbox", retried=True, by=by)
    return _move_at_rest(ds, "failed", task_id, change)


def answer_assigned(ds: DropSite, task_id: str, agent: str, answer: Any, by: str) -> Task:
    """Claim an inbox task assigned to a human agent (as a person: pid 0) and complete it
    with {"answer": ..., "by": ...}, as `dropsited review` does."""
    task = ds.claim(agent, check_task_id(task_id), holder_pid=0)
    if task is None:
        found = ds.locate(task_id)
        where = f"it is in {found.folder}/" if found else "there is no such task"
        raise TaskNotFound(f"task {task_id} cannot be claimed for {agent}: {where} "
                           "(or it is not due yet)")
    ds.complete(task, {"answer": answer, "by": by})
    return task


def _move_at_rest(ds: DropSite, folder: str, task_id: str, change: Callable[[Task], None]) -> Task:
    check_task_id(task_id)
    path = ds.workspace / folder / f"{task_id}.json"
    try:
        task = ds.store.load(path)
    except FileNotFoundError:
        found = ds.locate(task_id)
        hint = f" (it is in {found.folder}/)" if found else ""
        raise TaskNotFound(f"no task {task_id} in {folder}/{hint}") from None
    change(task)
    ds.store.move(path, "inbox", task, held=False)  # TaskNotFound if someone moved it first
    return task
