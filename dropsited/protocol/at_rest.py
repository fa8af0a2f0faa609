"""The moves a person or an operator asks for, of tasks no agent holds (or one just stopped).

A mixin of DropSite (workspace.py): answering feedback, unblocking, retrying and
cancelling decide what the task's history says and where it goes; the store moves
the file, and the dispatcher hears of whatever lands in inbox/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .dispatch import InboxDispatcher
from .errors import TaskNotFound
from .names import check_task_id
from .store import TaskStore
from .task import Task
from .workspace_args import by_entry, need_task, need_text, rollback


class AtRestMoves:
    """respond_feedback, unblock, retry and cancel, for DropSite (see the module docstring)."""

    # What DropSite provides.
    store: TaskStore
    dispatcher: InboxDispatcher
    _restore_assignment: Callable[[Task], None]
    _leave_active: Callable[[Task, str], str]

    # -- moving tasks at rest ---------------------------------------------------
    # `by`: the person who did it, recorded in the history entry (a review page or an
    # MCP client acts for someone); 0.1.0's signatures, without it, still work.
    def respond_feedback(self, task_id: str, response: Any, by: str | None = None) -> Task:
        """feedback/ -> inbox/ with the answer in context["_feedback_response"]."""
        task, where = self._load_from("feedback", task_id)
        task.context["_feedback_response"] = response
        task.log("inbox", feedback_received=True, **by_entry(by))
        return self._move_at_rest(where, task)

    def unblock(self, task_id: str, note: str | None = None, by: str | None = None) -> Task:
        task, where = self._load_from("blocked", task_id)
        task.log("inbox", unblocked=True, **by_entry(by), **({"note": str(note)} if note else {}))
        return self._move_at_rest(where, task)

    def retry(self, task_id: str, by: str | None = None) -> Task:
        """failed/ -> inbox/ with the attempt count reset, for a human who fixed the cause."""
        task, where = self._load_from("failed", task_id)
        task.retry_count = 0
        task.log("inbox", retried=True, **by_entry(by))
        return self._move_at_rest(where, task)

    def cancel(self, task: Task, by: str, *, requeue: bool = False, **entry: Any) -> str:
        """A held task cancelled by a person (its process already stopped): failed/ with
        the error `cancelled by <by>`, or with `requeue` back to inbox/ at once, no attempt
        used. Returns the folder."""
        need_task("cancel", task)
        by = need_text("cancel", "by", by)
        with rollback(task):
            self._restore_assignment(task)
            dest = self._log_cancel(task, by, requeue, entry)
            return self._leave_active(task, dest)

    def cancel_at_rest(self, task_id: str, by: str, *, requeue: bool = False,
                       **entry: Any) -> tuple[str, Task]:
        """A task not running (inbox/, feedback/, blocked/) cancelled: to failed/, or with
        `requeue` to inbox/. (folder, task); TaskNotFound when it is not in those folders."""
        by = need_text("cancel", "by", by)
        where = self.store.locate(check_task_id(task_id), ("inbox", "feedback", "blocked"))
        if where is None:
            found = self.store.locate(task_id)
            hint = f" (it is in {found.folder}/)" if found else ""
            raise TaskNotFound(f"no task {task_id} in inbox/, feedback/ or blocked/{hint}")
        task = self.store.load_entry(where.folder, where.name)
        if requeue and where.folder == "inbox":
            return "inbox", task  # where it would go: nothing to move
        dest = self._log_cancel(task, by, requeue, entry)
        self.store.move((where.folder, where.name), dest, task, held=False)
        if where.folder == "inbox" or dest == "inbox":
            self.dispatcher.note(task.id)
        return dest, task

    @staticmethod
    def _log_cancel(task: Task, by: str, requeue: bool, entry: dict) -> str:
        """The history entry of a cancel; returns the folder it sends the task to."""
        reason = f"cancelled by {by}"
        if requeue:
            task.log("inbox", cancelled=True, requeued=True, reason=reason, by=by, **entry)
            return "inbox"
        task.log("failed", cancelled=True, error=reason, by=by, **entry)
        return "failed"

    def _move_at_rest(self, where: tuple[str, str], task: Task) -> Task:
        self.store.move(where, "inbox", task, held=False)  # TaskNotFound if moved meanwhile
        self.dispatcher.note(task.id)
        return task

    def _load_from(self, folder: str, task_id: str) -> tuple[Task, tuple[str, str]]:
        check_task_id(task_id)
        name = f"{task_id}.json"
        try:
            return self.store.load_entry(folder, name), (folder, name)
        except FileNotFoundError:
            where = self.store.locate(task_id)
            hint = f" (it is in {where.folder}/)" if where else ""
            raise TaskNotFound(f"no task {task_id} in {folder}/{hint}") from None
