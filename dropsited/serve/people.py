"""What a person does to a task at rest, recorded with the person's name in its history.

A review page or an MCP client answers for someone: these call DropSite's moves with
`by`, so the same rules hold (a task moves from feedback/, blocked/ or failed/ only,
never out of active/: a live holder's task cannot be taken from it here).
"""

from __future__ import annotations

import unicodedata
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
    """feedback/ -> inbox/ with the answer in context._feedback_response."""
    return ds.respond_feedback(task_id, answer, by=by)


def unblock(ds: DropSite, task_id: str, by: str, note: str | None = None) -> Task:
    return ds.unblock(task_id, note, by=by)


def retry(ds: DropSite, task_id: str, by: str) -> Task:
    """failed/ -> inbox/ with the attempts reset."""
    return ds.retry(task_id, by=by)


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

