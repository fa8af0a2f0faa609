"""The only module (with its repairs, store_repair.py, and its archive moves, store_archive.py)
that creates, moves or removes task files.

Every move follows one pattern, chosen for crash safety and for ext4 speed:

1. write the task's new content to a fresh hidden temp name in the
   destination folder (`.<id>~<host>~<pid>~<start>.tmp`), fsync it if durable;
2. the commit point: unlink the source file on a local file system (only one
   process can unlink a file), or, on a network file system, rename it to a fresh
   name of this writer's (`.<id>~<host>~<pid>~<start>.old`, removed after step 3):
   two clients unlinking one file on GlusterFS both succeed now and then, two
   renaming it to different fresh names never do. The loser learns it from
   FileNotFoundError, checked against what is really there (a reply lost on the
   network makes a rename that succeeded report ENOENT);
3. give the temp file its final name `<id>.json`, never over an existing file
   (`renameat2(RENAME_NOREPLACE)`, or a hard link where the kernel lacks it), and
   fsync the destination folder if durable.

Nothing is ever renamed over an existing task file: on ext4 that forces a data
flush (0.1.0's rewrite-in-place ran five times slower for it), and it would destroy
the task already there. A crash between 2 and 3 leaves the task only as the temp
file of a dead writer; `recover_temp_files` promotes it. A crash between 1 and 2
leaves a temp file whose task still exists elsewhere; recovery deletes it.

A claim is one rename of `inbox/<id>.json` into active/ under a name that
encodes the holder (see holder.py), so it needs no content write at all.

Every path is opened through folders.py: never through a link, with fixed modes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ClaimLost, DropSiteError, InvalidTask, TaskNotFound
from .folders import (
    META_FOLDERS,
    QUARANTINE,
    TASK_FOLDERS,
    UnsafeWorkspace,
    WorkspaceFolders,
)
from .fs import (
    BadFile,
    StorageError,
    fsync_dir,
    is_gone,
    read_bytes,
    renameat2_noreplace,
    unlink_quietly,
    write_file,
)
from .holder import SEP, Holder, parse_active_name
from .mounts import on_network
from .move_names import (
    my_temp_tag,
    parse_temp_name,
    temp_name,
    tombstone_name,
)
from .names import is_valid_task_id
from .store_archive import StoreArchive
from .store_repair import LATE_RESULTS, StoreRepair
from .task import Task, utcnow_iso

__all__ = [
    "BadFile", "DEFAULT_MAX_TASK_BYTES", "LATE_RESULTS", "Located", "META_FOLDERS", "QUARANTINE",
    "StorageError", "TASK_FOLDERS", "TaskStore", "UnsafeWorkspace", "apply_claim", "fsync_dir",
    "parse_temp_name", "read_bytes", "temp_name", "tombstone_name", "write_file",
]

DEFAULT_MAX_TASK_BYTES = 4 * 1024 * 1024


@dataclass
class Located:
    """Where a task file is: its folder, its path, and its holder if it is in active/."""

    folder: str
    path: Path
    task_id: str
    holder: Holder | None = None

    @property
    def name(self) -> str:
        return self.path.name


class TaskStore(StoreArchive, StoreRepair, WorkspaceFolders):
    """Task files of one workspace. The DropSite facade adds task semantics."""

    def __init__(self, root: Path, durable: bool = True,
                 max_task_bytes: int = DEFAULT_MAX_TASK_BYTES, shared: bool | None = None) -> None:
        super().__init__(root)
        self.durable = durable
        self.max_task_bytes = max_task_bytes
        self._links: bool | None = None  # hard links work here: probed once, on first need
        # On a file system other hosts may share, a move commits by a rename (see above).
        self.shared = on_network(self.root) if shared is None else shared
        # Told of each entry moved to quarantine/ (its .reason record), from any thread:
        # the daemon's event hooks. It must return at once and never raise.
        self.on_quarantine: Callable[[dict], None] | None = None

    def folder(self, name: str) -> Path:
        return self.root / name

    # -- reading ------------------------------------------------------------
    def _split(self, path: Path | str) -> tuple[str, str] | None:
        """(folder, name) for a path inside one of this workspace's folders."""
        head, name = os.path.split(os.fspath(path))
        head, folder = os.path.split(head)
        if name and folder and os.path.normpath(head) == os.path.normpath(self.root):
            return folder, name
        return None

    def load(self, path: Path | str) -> Task:
        """Parse a task file given by path; BadFile says what is wrong. Holder comes from the name."""
        where = self._split(path)
        if where is None:
            text = os.fspath(path)
            return self._parse(read_bytes(text, self.max_task_bytes), text,
                               os.path.basename(os.path.dirname(text)), os.path.basename(text))
        return self.load_entry(*where)

    def load_entry(self, folder: str, name: str) -> Task:
        """Parse `folder/name`; FileNotFoundError if it is gone, BadFile if it is no task."""
        raw = self.read(folder, name, self.max_task_bytes)
        return self._parse(raw, self.path(folder, name), folder, name)

    @staticmethod
    def _parse(raw: bytes, path: Path | str, folder: str, name: str) -> Task:
        parsed = parse_active_name(name) if folder == "active" else None
        stem = parsed[0] if parsed else name[:-5] if name.endswith(".json") else None
        if stem is None or not is_valid_task_id(stem):
            raise BadFile(path, "file name is not <task id>.json (letters, digits, '_' and '-')")
        try:
            task = Task.from_json(raw, default_id=stem)
        except InvalidTask as exc:
            raise BadFile(path, str(exc)) from None
        if task.id != stem:
            raise BadFile(path, f"id: {task.id!r} does not match the file name")
        if parsed and parsed[1] is not None:
            apply_claim(task, parsed[1])
        return task

    def locate(self, task_id: str, folders: tuple[str, ...] = TASK_FOLDERS) -> Located | None:
        """Find the one file that holds `task_id`, whichever folder it is in.

        A task that another process is moving exists, for a few microseconds, only as a
        temp file: a pass that finds nothing looks once more before saying None."""
        return self._locate(task_id, folders) or self._locate(task_id, folders)

    def _locate(self, task_id: str, folders: tuple[str, ...]) -> Located | None:
        name = f"{task_id}.json"
        for folder in folders:
            if self.exists(folder, name):
                return Located(folder, self.path(folder, name), task_id)
            if folder == "active":
                prefix = task_id + SEP
                for entry in self.entries("active"):
                    if entry.name.startswith(prefix):
                        parsed = parse_active_name(entry.name)
                        if parsed and parsed[0] == task_id:
                            return Located("active", self.path("active", entry.name), task_id,
                                           parsed[1])
        return None

    # -- writing ------------------------------------------------------------
    def encode(self, task: Task) -> bytes:
        """The file content of `task`, or InvalidTask: what a reader would refuse (the
        number rules of json_rules.py, the size limit) is refused before any write."""
        data = task.to_json()
        if len(data) > self.max_task_bytes:
            raise InvalidTask(f"task {task.id} is {len(data)} bytes, over the "
                              f"{self.max_task_bytes}-byte limit readers accept")
        return data

    def _write_temp(self, folder: str, task_id: str, data: bytes) -> str:
        tmp = temp_name(task_id)
        try:
            self.retrying(folder, lambda fd: write_file(tmp, data, self.durable, dir_fd=fd))
        except FileNotFoundError:
            raise StorageError(f"cannot create {self.path(folder, tmp)}: no such folder",
                               errno.ENOENT) from None
        except UnsafeWorkspace as exc:
            raise StorageError(str(exc), errno.ELOOP) from None
        return tmp

    def create(self, folder: str, task: Task) -> Path:
        """Place a new task; refuses an id that any folder already holds."""
        data = self.encode(task)
        found = self.locate(task.id)
        if found is not None:
            raise DropSiteError(f"{found.path}: a task with id {task.id} already exists "
                                f"(in {found.folder}/); ids are never reused")
        final = f"{task.id}.json"
        tmp = self._write_temp(folder, task.id, data)
        fd = self.fd(folder)
        tmp_ino = os.lstat(tmp, dir_fd=fd).st_ino
        try:
            self.rename_noreplace(tmp, final, fd, fd)
        except OSError as exc:
            if not self._placed(fd, tmp, final, tmp_ino):
                unlink_quietly(tmp, fd)
                if isinstance(exc, FileExistsError) or self.exists(folder, final):
                    # (sshfs answers a link onto a taken name with EPERM)
                    raise DropSiteError(f"{self.path(folder, final)}: a task with id {task.id} "
                                        "already exists") from None
                raise StorageError(f"cannot place {self.path(folder, final)}: {exc.strerror}",
                                   exc.errno) from None
            unlink_quietly(tmp, fd)
        if self.durable:
            os.fsync(fd)
        return self.path(folder, final)

    @staticmethod
    def _placed(fd: int, tmp: str, final: str, tmp_ino: int) -> bool:
        """After an error from the rename or link of `tmp` to `final`: did it happen anyway
        (a lost reply on a network file system, as Postfix's sane_rename knows)?"""
        try:
            final_ino = os.lstat(final, dir_fd=fd).st_ino
        except OSError:
            return False
        try:
            return os.lstat(tmp, dir_fd=fd).st_ino == final_ino  # linked: the same file
        except OSError:
            return final_ino == tmp_ino  # renamed: tmp is gone, final is it

    def move(self, src: Path | str | tuple[str, str], dest_folder: str, task: Task,
             held: bool) -> Path:
        """Commit `task` (new content) to `dest_folder` and remove `src`, crash-safely.

        `src`: (folder, name), or a path inside the workspace. `held`: the caller claimed
        `src`; losing it raises ClaimLost, else TaskNotFound. InvalidTask, before any
        write, when the new content is not a task readers accept.
        """
        src_folder, src_name = src if isinstance(src, tuple) else self._must_split(src)
        data = self.encode(task)
        final = f"{task.id}.json"
        if self.exists(dest_folder, final):
            if not self.exists(src_folder, src_name):  # moved there by someone else: lost
                self._lost(task.id, src_folder, src_name, held)
            raise DropSiteError(f"{self.path(dest_folder, final)}: another task with id "
                                f"{task.id} is already there; {src_folder}/{src_name} is left as it is")
        tmp = self._write_temp(dest_folder, task.id, data)
        dest_fd = self.fd(dest_folder)
        try:
            tombstone = self._commit(src_folder, src_name, task.id)
        except (OSError, DropSiteError) as exc:
            unlink_quietly(tmp, dest_fd)
            if isinstance(exc, OSError) and not is_gone(exc):
                raise StorageError(f"cannot remove {self.path(src_folder, src_name)}: "
                                   f"{exc.strerror}", exc.errno) from None
            self._lost(task.id, src_folder, src_name, held)
        self._place(dest_folder, tmp, final, task.id, data)
        if self.durable:
            os.fsync(dest_fd)
        if tombstone is not None:
            unlink_quietly(tombstone, self.fd(src_folder))
        return self.path(dest_folder, final)

    def _commit(self, folder: str, name: str, task_id: str) -> str | None:
        """Take the source away, exclusively: the tombstone's name, None where the source
        was unlinked. FileNotFoundError when another process took it first."""
        fd = self.fd(folder)
        if not self.shared:
            os.unlink(name, dir_fd=fd)
            return None
        tombstone = tombstone_name(task_id)
        try:
            os.rename(name, tombstone, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            if not (is_gone(exc) and self.exists(folder, tombstone)):
                raise  # ENOENT with our tombstone there: the rename happened, its reply was lost
        return tombstone

    def _lost(self, task_id: str, folder: str, name: str, held: bool) -> None:
        where = self.path(folder, name)
        if held:
            raise ClaimLost(f"task {task_id} is no longer held at {where}")
        raise TaskNotFound(f"task {task_id} is no longer at {where}")

    def _must_split(self, path: Path | str) -> tuple[str, str]:
        where = self._split(path)
        if where is None:
            raise DropSiteError(f"{path}: not a file of workspace {self.root}")
        return where

    def _place(self, folder: str, tmp: str, final: str, task_id: str, data: bytes) -> None:
        """Give a committed temp file its final name, never over another task. The temp
        file is the task's only copy now: whatever happens, it is not dropped."""
        fd = self.fd(folder)
        problem = f"a task with id {task_id} appeared in {folder}/ during the move"
        tmp_ino = os.lstat(tmp, dir_fd=fd).st_ino
        try:
            self.rename_noreplace(tmp, final, fd, fd)
            return
        except FileExistsError:
            if self._placed(fd, tmp, final, tmp_ino):
                unlink_quietly(tmp, fd)
                return
        except OSError as exc:
            if self._placed(fd, tmp, final, tmp_ino):
                unlink_quietly(tmp, fd)
                return
            if not is_gone(exc):
                raise StorageError(f"cannot place {self.path(folder, final)}: {exc.strerror}",
                                   exc.errno) from None
            # The temp file vanished (removed as abandoned?): write it again from memory.
            write_file(tmp, data, self.durable, dir_fd=fd)
            try:
                self.rename_noreplace(tmp, final, fd, fd)
                return
            except FileExistsError:
                pass
        self.quarantine(folder, tmp, f"{problem}; this copy was kept here instead")
        raise DropSiteError(f"{self.path(folder, final)}: {problem}; the moving copy is in "
                            f"{QUARANTINE}/")

    def rename_noreplace(self, src: str, dst: str, src_fd: int, dst_fd: int,
                         shared: bool = False) -> None:
        """rename(2) that never replaces `dst` (FileExistsError instead).

        Without RENAME_NOREPLACE: a source only this process knows (`shared=False`, a
        temp file) is hard-linked, which fails with EEXIST, then unlinked; a source
        others may move too (a claim) keeps the plain rename, which only one racer can
        win, after a check that `dst` is free.
        """
        if renameat2_noreplace(src, dst, src_fd, dst_fd):
            return
        if not shared and self.hard_links():
            os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            unlink_quietly(src, src_fd)
            return
        with contextlib.suppress(FileNotFoundError):
            os.lstat(dst, dir_fd=dst_fd)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def hard_links(self) -> bool:
        """Whether this workspace's file system has hard links, probed once: a racing
        link's error must never decide it (on sshfs the loser of a race gets EPERM)."""
        if self._links is None:
            self._links = self._probe_links()
        return self._links

    def _probe_links(self) -> bool:
        fd = self.root_fd()  # not a task folder: no reader lists the root
        a, b = (f".dropsite-probe{SEP}{my_temp_tag()}{SEP}{x}" for x in "ab")
        try:
            write_file(a, b"", False, dir_fd=fd)
        except StorageError:
            return True  # cannot tell; the link itself will say
        try:
            os.link(a, b, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        finally:
            unlink_quietly(a, fd)
            unlink_quietly(b, fd)
        return True

    def claim(self, task_id: str, holder: Holder) -> str | None:
        """Rename inbox/<id>.json into active/ under the holder's name; the new name,
        or None if someone else won (or it is not a regular file)."""
        name, dest = f"{task_id}.json", holder.file_name(task_id)
        try:
            inbox, active = self.fd("inbox"), self.fd("active")
            if not stat.S_ISREG(os.lstat(name, dir_fd=inbox).st_mode):
                return None
            self.rename_noreplace(name, dest, inbox, active, shared=True)
        except OSError as exc:
            if is_gone(exc) and self.exists("active", dest):
                return dest  # the rename happened; its reply was lost
            if is_gone(exc) or isinstance(exc, FileExistsError):
                return None
            raise
        return dest

    def unclaim(self, active_name: str, task_id: str) -> bool:
        """Undo a claim that wrote nothing: rename back to inbox/<id>.json."""
        try:
            self.rename_noreplace(active_name, f"{task_id}.json", self.fd("active"),
                                  self.fd("inbox"), shared=True)
        except OSError as exc:
            if is_gone(exc) or isinstance(exc, FileExistsError):
                return False
            raise
        return True


def apply_claim(task: Task, holder: Holder) -> None:
    """Give an in-memory task the state 0.1.0 would have written at claim time."""
    task.assigned_before_claim = task.assigned_to
    task.holder = holder
    task.log("active", at=utcnow_iso(holder.claimed_at), **holder.as_entry())
    task.assigned_to = holder.agent
