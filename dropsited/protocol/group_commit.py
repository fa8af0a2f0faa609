"""Group commit for durable moves: many moves, one sync of their files, one fsync per folder.

Owned by store.py (the only module that moves task files): while a thread holds
`TaskStore.group_commit()`, each `move` it makes does only step 1 of store.py's
pattern (the new content in a temp file in the destination folder, not yet synced)
and is queued here. `flush` then finishes them all:

1. the data: writeback of every temp file is started at once (sync_file_range on
   Linux), then each is fsynced: on ext4 the first fsync commits the journal for all
   of them, so the rest return without another commit;
2. for each move in order, the commit point (the source unlinked, or renamed to a
   tombstone on a shared file system) and the final name, never over another task;
3. one fsync of each destination folder, then the tombstones go.

What "durable" means is unchanged: a task gets its final name only after its file
is synced, and its caller learns that a move happened (and reports it: status,
`Finished`, hooks) only when `flush` returns, after the folder's fsync. A crash in the
middle leaves each task exactly as a crash inside a single move would: a temp file of
a dead writer beside a source that still exists (deleted by recovery), or a committed
temp file without a final name (promoted by recovery), or a placed task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import DropSiteError
from .fs import StorageError, create_file, is_gone, start_writeback, unlink_quietly
from .move_names import temp_name

if TYPE_CHECKING:
    from .store import TaskStore


@dataclass
class Pending:
    """One queued move: its temp file (still open) and where it goes."""

    src_folder: str
    src_name: str
    dest: str
    tmp: str
    task_id: str
    data: bytes
    held: bool
    fd: int | None


@dataclass(frozen=True)
class Failure:
    """A queued move that did not happen as asked. `committed`: the source is gone and the
    task is in `dest` or quarantine/ (only its final name failed); else the source is
    untouched and can be moved again."""

    error: DropSiteError
    dest: str
    src_folder: str
    src_name: str
    committed: bool = False


class GroupCommit:
    """The moves one thread queued inside `TaskStore.group_commit()`."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.pending: list[Pending] = []

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, src_folder: str, src_name: str, dest: str, task_id: str, data: bytes,
            held: bool) -> None:
        """Step 1 of a move: the new content in a temp file of `dest`, not synced yet."""
        store = self.store
        tmp = temp_name(task_id)
        try:
            fd = store.retrying(dest, lambda dir_fd: create_file(tmp, data, dir_fd=dir_fd))
        except FileNotFoundError:
            raise StorageError(f"cannot create {store.path(dest, tmp)}: no such folder") from None
        self.pending.append(Pending(src_folder, src_name, dest, tmp, task_id, data, held, fd))

    def flush(self) -> list[Failure | None]:
        """Finish every queued move; one entry per move, in order: None where it happened."""
        results: list[Failure | None] = [self._sync(p) for p in self._started()]
        tombstones: list[tuple[str, str]] = []
        synced_folders: set[str] = set()
        for i, p in enumerate(self.pending):
            if results[i] is None:
                results[i] = self._commit(p, tombstones)
                if results[i] is None or results[i].committed:
                    synced_folders.add(p.dest)
        for folder in sorted(synced_folders):
            try:
                os.fsync(self.store.fd(folder))
            except OSError as exc:
                error = StorageError(f"cannot sync {self.store.path(folder)}: {exc.strerror}",
                                     exc.errno)
                for i, p in enumerate(self.pending):
                    if p.dest == folder and results[i] is None:
                        results[i] = Failure(error, p.dest, p.src_folder, p.src_name, True)
        for folder, name in tombstones:
            unlink_quietly(name, self.store.fd(folder))
        self.pending = []
        return results

    def abandon(self) -> None:
        """Drop moves never flushed (an error in the batch): their sources are untouched."""
        for p in self.pending:
            self._close(p)
            unlink_quietly(p.tmp, self.store.fd(p.dest))
        self.pending = []

    def _started(self) -> list[Pending]:
        for p in self.pending:
            if p.fd is not None:
                start_writeback(p.fd)
        return self.pending

    def _sync(self, p: Pending) -> Failure | None:
        try:
            os.fsync(p.fd)
        except OSError as exc:
            self._close(p)
            unlink_quietly(p.tmp, self.store.fd(p.dest))
            error = StorageError(f"cannot write {self.store.path(p.dest, p.tmp)}: "
                                 f"{exc.strerror}", exc.errno)
            return Failure(error, p.dest, p.src_folder, p.src_name)
        self._close(p)
        return None

    def _commit(self, p: Pending, tombstones: list[tuple[str, str]]) -> Failure | None:
        """Steps 2 and 3 of store.py's pattern for one synced temp file."""
        store = self.store
        try:
            tombstone = store._commit(p.src_folder, p.src_name, p.task_id)
        except (OSError, DropSiteError) as exc:
            unlink_quietly(p.tmp, store.fd(p.dest))
            if isinstance(exc, OSError) and not is_gone(exc):
                error = StorageError(f"cannot remove {store.path(p.src_folder, p.src_name)}: "
                                     f"{exc.strerror}", exc.errno)
            else:
                try:
                    store._lost(p.task_id, p.src_folder, p.src_name, p.held)
                except DropSiteError as lost:  # ClaimLost (held) or TaskNotFound
                    error = lost
            return Failure(error, p.dest, p.src_folder, p.src_name)
        if tombstone is not None:
            tombstones.append((p.src_folder, tombstone))
        try:
            store._place(p.dest, p.tmp, f"{p.task_id}.json", p.task_id, p.data)
        except (OSError, DropSiteError) as exc:
            error = exc if isinstance(exc, DropSiteError) else StorageError(str(exc), exc.errno)
            return Failure(error, p.dest, p.src_folder, p.src_name, committed=True)
        return None

    @staticmethod
    def _close(p: Pending) -> None:
        if p.fd is not None:
            os.close(p.fd)
            p.fd = None
