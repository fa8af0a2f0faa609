"""Checks of the arguments DropSite's callers pass, and the undo of a failed move.

The 0.1.0 API is called from scripts with whatever they have at hand (a None from a
claim that found nothing, a tag string instead of a list): each gets a one-line
InvalidArgument (a TypeError too) instead of a traceback from deep inside a move.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .errors import ClaimLost, DropSiteError, InvalidArgument
from .task import Task


def by_entry(person: str | None) -> dict:
    return {} if person is None else {"by": need_text("by", "by", person)}


def need_task(call: str, task: Any) -> None:
    if not isinstance(task, Task):
        raise InvalidArgument(f"{call}() needs a Task, got {type(task).__name__} "
                              "(did a claim return None?)")


def need_text(call: str, what: str, value: Any) -> str:
    if value is None:
        raise InvalidArgument(f"{call}(): {what} must be a string, got None")
    return value if isinstance(value, str) else str(value)


def tag_set(what: str, tags: Any) -> frozenset | None:
    if tags is None:
        return None
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise InvalidArgument(f"{what} must be a list of strings, got {tags!r:.80}")
    return frozenset(tags) or None


class rollback(contextlib.AbstractContextManager):
    """Undo the in-memory changes of a move that failed (InvalidTask: a result with NaN,
    too big...; StorageError: disk full, folder gone), so the caller still holds the
    task as it was and may record another outcome, such as a failed attempt."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.saved = (len(task.history), task.status, task.updated_at, task.result,
                      task.retry_count, task.assigned_to, dict(task.context))

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> None:
        if kind is not None and issubclass(kind, (DropSiteError, OSError)) \
                and not issubclass(kind, ClaimLost):
            task = self.task
            length, task.status, task.updated_at, task.result, task.retry_count, \
                task.assigned_to, context = self.saved
            del task.history[length:]
            task.context.clear()
            task.context.update(context)
        return None
