"""A folder's tasks as 0.1.0 lists them: its filters, its order, unreadable files skipped."""

from __future__ import annotations

from .errors import DropSiteError, InvalidTask
from .store import TASK_FOLDERS, BadFile, TaskStore
from .task import Task


def list_folder(store: TaskStore, folder: str, agent: str | None,
                wanted: frozenset | None) -> list[Task]:
    """The tasks of `folder` assigned to `agent` (or to no one) carrying any tag of `wanted`."""
    if folder not in TASK_FOLDERS:
        raise DropSiteError(f"unknown folder {folder!r} (one of: {', '.join(TASK_FOLDERS)})")
    tasks = []
    for entry in store.entries(folder):
        if not entry.name.endswith(".json") or entry.name.startswith("."):
            continue
        try:
            task = store.load_entry(folder, entry.name)
        except (FileNotFoundError, BadFile, InvalidTask):
            continue
        if agent and task.assigned_to and task.assigned_to != agent:
            continue
        if wanted and not any(t in wanted for t in task.tags):
            continue
        tasks.append(task)
    # 0.1.0 sorts the file names first, so ties fall back to the id.
    tasks.sort(key=lambda t: (t.priority, t.created_at, t.id))
    return tasks
