"""TaskStore's archive moves: finished tasks into `archive/YYYY-MM-DD/` (PROTOCOL.md §11).

A mixin of TaskStore (store.py), as store_repair.py is: store.py and these two are the
only modules that move task files. Retention (retention.py) decides which tasks go;
this module moves them, with the store's pattern and one difference: the source is
always taken by a rename to a tombstone in its own folder (never unlinked first),
because recovery scans only the task folders. A crash mid-move therefore leaves the
tombstone, which recovery puts back when the task is found nowhere else, so a task
is never lost; at worst it is in done/ and in archive/ once each (the next archive
run removes the source whose archived copy is byte for byte the same).

Two layouts: one `<id>.json` per task in a day folder (readable, greppable, one
file per task as before), or with compression one `YYYY-MM-DD.jsonl.gz` per day,
a gzip member per batch of JSON lines appended (gzip -dc and zcat read them all).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
from pathlib import Path

from .errors import DropSiteError, TaskNotFound
from .fs import FILE_MODE, OPEN_APPEND, UMASK, StorageError, is_gone, unlink_quietly
from .move_names import tombstone_name
from .task import Task

ARCHIVE = "archive"
DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
GZ_SUFFIX = ".jsonl.gz"


class StoreArchive:
    """archive/ moves for TaskStore (see the module docstring)."""

    def archive_folder(self, day: str) -> str:
        """`archive/<day>`, made with fixed modes if missing, refused if it is a link."""
        if not DAY_RE.match(day):
            raise DropSiteError(f"archive day {day!r} is not YYYY-MM-DD")
        self.make_folder(ARCHIVE)
        self.fd(ARCHIVE)  # UnsafeWorkspace if archive/ is a link
        folder = f"{ARCHIVE}/{day}"
        self.make_folder(folder)
        self.fd(folder)
        return folder

    def _take(self, folder: str, name: str, task_id: str) -> str:
        """Rename the source to this writer's tombstone: only one mover can win it.
        TaskNotFound when it is gone (retried, or archived by another process)."""
        fd = self.fd(folder)
        tombstone = tombstone_name(task_id)
        try:
            os.rename(name, tombstone, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            if is_gone(exc) and self.exists(folder, tombstone):
                return tombstone  # the rename happened; its reply was lost
            if is_gone(exc):
                raise TaskNotFound(f"task {task_id} is no longer at "
                                   f"{self.path(folder, name)}") from None
            raise StorageError(f"cannot move {self.path(folder, name)}: {exc.strerror}",
                               exc.errno) from None
        return tombstone

    def archive(self, folder: str, name: str, task: Task, day: str) -> Path:
        """Move `folder/name` (holding `task`) to archive/<day>/<id>.json, crash-safely."""
        dest = self.archive_folder(day)
        data = self.encode(task)
        final = f"{task.id}.json"
        if self.exists(dest, final):
            if self.read(dest, final, self.max_task_bytes) != data:
                raise DropSiteError(f"{self.path(dest, final)}: another copy of task {task.id} "
                                    f"is already archived; {folder}/{name} is left as it is")
            unlink_quietly(self._take(folder, name, task.id), self.fd(folder))
            return self.path(dest, final)  # a crash had left both: the source goes
        tmp = self._write_temp(dest, task.id, data)
        try:
            tombstone = self._take(folder, name, task.id)
        except DropSiteError:
            unlink_quietly(tmp, self.fd(dest))
            raise
        self._place(dest, tmp, final, task.id, data)
        if self.durable:
            os.fsync(self.fd(dest))
        unlink_quietly(tombstone, self.fd(folder))
        return self.path(dest, final)

    def archive_compressed(self, folder: str, items: list[tuple[str, Task]], day: str) -> list[str]:
        """Append tasks as one gzip member of JSON lines to archive/<day>.jsonl.gz, then
        remove their sources; the ids archived (a source gone meanwhile is skipped)."""
        self.archive_folder(day)
        taken: list[tuple[str, Task]] = []
        for name, task in items:
            self.encode(task)  # refuse what a reader would refuse, before any move
            with contextlib.suppress(TaskNotFound):
                taken.append((self._take(folder, name, task.id), task))
        if not taken:
            return []
        lines = b"".join(json.dumps(t.to_dict(), ensure_ascii=False, separators=(",", ":"))
                         .encode() + b"\n" for _, t in taken)
        try:
            self._append(ARCHIVE, f"{day}{GZ_SUFFIX}", gzip.compress(lines, mtime=0))
        except StorageError:
            for tombstone, task in taken:  # put them back: nothing archived, nothing lost
                with contextlib.suppress(OSError):
                    self.rename_noreplace(tombstone, f"{task.id}.json", self.fd(folder),
                                          self.fd(folder), shared=True)
            raise
        for tombstone, _ in taken:
            unlink_quietly(tombstone, self.fd(folder))
        return [t.id for _, t in taken]

    def _append(self, folder: str, name: str, data: bytes) -> None:
        """Append and fsync, never through a link, the file made with FILE_MODE."""
        try:
            fd = os.open(name, OPEN_APPEND, FILE_MODE, dir_fd=self.fd(folder))
        except OSError as exc:
            raise StorageError(f"cannot open {self.path(folder, name)}: {exc.strerror}",
                               exc.errno) from None
        try:
            if os.fstat(fd).st_size == 0 and FILE_MODE & ~UMASK != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path(folder, name)}: {exc.strerror}",
                               exc.errno) from None
        finally:
            os.close(fd)
