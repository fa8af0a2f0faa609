"""Retention: which finished tasks are old enough for archive/, and reading them back.

Used alike by `dropsited archive` and the daemon's `retention:` (daemon/retention.py).
A task's age is counted from when it finished: the time of its last history entry,
else its updated_at. Every file is parsed totally; one that cannot be read or has no
usable time is skipped with a note, never moved. The moves are the store's
(store_archive.py); the day folder is the UTC date the task finished.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import DropSiteError, InvalidTask
from .fs import BadFile
from .names import is_valid_task_id
from .store import TaskStore
from .store_archive import ARCHIVE, DAY_RE, GZ_SUFFIX
from .task import Task, parse_iso

FINISHED = ("done", "failed")
MAX_GZ_BYTES = 1 << 30  # a day file read back by `show`/`list`, at most


@dataclass
class Report:
    """What one archive pass did (or, dry, would do)."""

    moved: list[tuple[str, str, str]] = field(default_factory=list)  # (id, from folder, day)
    notes: list[str] = field(default_factory=list)  # files skipped, and why
    kept: int = 0  # finished tasks not old enough

    def to_dict(self) -> dict:
        return {"moved": [{"id": i, "from": f, "day": d} for i, f, d in self.moved],
                "kept": self.kept, "notes": self.notes}


def finished_at(task: Task) -> float | None:
    """When the task finished: its last history entry's time, else updated_at."""
    for entry in reversed(task.history):
        at = entry.get("at") if isinstance(entry, dict) else None
        moment = parse_iso(at) if isinstance(at, str) else None
        if moment is not None:
            return moment
    return parse_iso(task.updated_at) if isinstance(task.updated_at, str) else None


def day_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d")


def candidates(store: TaskStore, folder: str, older_than: float, now: float,
               report: Report) -> Iterator[tuple[str, Task, str]]:
    """(file name, task, day) of each task in `folder` finished before now - older_than."""
    cutoff = now - older_than
    for entry in store.entries(folder):
        name = entry.name
        if name.startswith(".") or not name.endswith(".json"):
            continue
        try:
            task = store.load_entry(folder, name)
        except FileNotFoundError:
            continue
        except (BadFile, DropSiteError, OSError) as exc:
            report.notes.append(f"skipped {folder}/{name}: {exc}")
            continue
        moment = finished_at(task)
        if moment is None:
            report.notes.append(f"skipped {folder}/{name}: no time in its history or updated_at")
        elif moment <= cutoff:
            yield name, task, day_of(moment)
        else:
            report.kept += 1


def archive(store: TaskStore, ages: dict[str, float], now: float | None = None,
            dry_run: bool = False, compress: bool = False, limit: int | None = None,
            pause: Callable[[int], bool] | None = None) -> Report:
    """Move the tasks of each folder in `ages` (done/failed -> age in seconds) older than
    its age into archive/. `limit`: at most this many moves; `pause(n)` is called after
    each batch of moves and returns False to stop (the daemon's rate limit and stop)."""
    now = time.time() if now is None else now
    report = Report()
    for folder, age in ages.items():
        if folder not in FINISHED:
            raise DropSiteError(f"only done/ and failed/ are archived, not {folder}/")
        batch: dict[str, list[tuple[str, Task]]] = {}
        for name, task, day in candidates(store, folder, age, now, report):
            if limit is not None and len(report.moved) + sum(map(len, batch.values())) >= limit:
                break
            if dry_run:
                report.moved.append((task.id, folder, day))
            elif compress:
                batch.setdefault(day, []).append((name, task))
                if len(batch[day]) >= 100:
                    _flush(store, folder, {day: batch.pop(day)}, report)
            else:
                _move_one(store, folder, name, task, day, report)
            if pause is not None and not dry_run and not pause(1):
                break
        _flush(store, folder, batch, report)
    return report


def _move_one(store: TaskStore, folder: str, name: str, task: Task, day: str,
              report: Report) -> None:
    try:
        store.archive(folder, name, task, day)
    except (DropSiteError, OSError) as exc:
        report.notes.append(f"not archived {folder}/{name}: {exc}")
        return
    report.moved.append((task.id, folder, day))


def _flush(store: TaskStore, folder: str, batch: dict[str, list[tuple[str, Task]]],
           report: Report) -> None:
    for day, items in batch.items():
        try:
            ids = store.archive_compressed(folder, items, day)
        except (DropSiteError, OSError) as exc:
            report.notes.append(f"not archived {len(items)} tasks of {folder}/ into "
                                f"{ARCHIVE}/{day}{GZ_SUFFIX}: {exc}")
            continue
        report.moved.extend((i, folder, day) for i in ids)
    batch.clear()


# -- reading archive/ back (show, list) -------------------------------------------------


def days(store: TaskStore) -> list[tuple[str, bool]]:
    """(day, compressed) of archive/'s entries, oldest first; other entries are ignored."""
    out = []
    for entry in store.entries(ARCHIVE):
        name = entry.name
        if DAY_RE.match(name) and entry.is_dir(follow_symlinks=False):
            out.append((name, False))
        elif name.endswith(GZ_SUFFIX) and DAY_RE.match(name[: -len(GZ_SUFFIX)]) and \
                entry.is_file(follow_symlinks=False):
            out.append((name[: -len(GZ_SUFFIX)], True))
    return sorted(out)


def _gz_tasks(store: TaskStore, day: str, notes: list[str]) -> Iterator[Task]:
    name = f"{day}{GZ_SUFFIX}"
    try:
        raw = store.read(ARCHIVE, name, MAX_GZ_BYTES)
        lines = gzip.decompress(raw).splitlines()
    except (OSError, EOFError, DropSiteError, BadFile) as exc:
        notes.append(f"skipped {ARCHIVE}/{name}: {exc}")
        return
    for n, line in enumerate(lines, 1):
        try:
            yield Task.from_json(line)
        except (InvalidTask, ValueError) as exc:
            notes.append(f"skipped {ARCHIVE}/{name} line {n}: {exc}")


def archived_tasks(store: TaskStore, notes: list[str]) -> Iterator[tuple[str, Task]]:
    """(where, task) of every archived task, oldest day first; unreadable ones noted."""
    seen: set[str] = set()
    for day, compressed in days(store):
        if compressed:
            for task in _gz_tasks(store, day, notes):
                if task.id not in seen:
                    seen.add(task.id)
                    yield f"{ARCHIVE}/{day}{GZ_SUFFIX}", task
            continue
        folder = f"{ARCHIVE}/{day}"
        for entry in store.entries(folder):
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            try:
                task = store.load_entry(folder, entry.name)
            except FileNotFoundError:
                continue
            except (BadFile, DropSiteError, OSError) as exc:
                notes.append(f"skipped {folder}/{entry.name}: {exc}")
                continue
            if task.id not in seen:
                seen.add(task.id)
                yield folder, task


def find_archived(store: TaskStore, task_id: str) -> tuple[str, Task] | None:
    """(where, task) of an archived task: day folders by name first (cheap), then the
    compressed day files."""
    if not is_valid_task_id(task_id):
        return None
    entries = days(store)
    for day, compressed in entries:
        folder = f"{ARCHIVE}/{day}"
        if not compressed and store.exists(folder, f"{task_id}.json"):
            try:
                return folder, store.load_entry(folder, f"{task_id}.json")
            except (BadFile, DropSiteError, OSError):
                return None
    notes: list[str] = []
    for day, compressed in entries:
        if compressed:
            for task in _gz_tasks(store, day, notes):
                if task.id == task_id:
                    return f"{ARCHIVE}/{day}{GZ_SUFFIX}", task
    return None
