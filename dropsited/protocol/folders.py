"""The folders of one workspace, opened so that nothing inside it is ever followed.

A workspace is shared ground (PROTOCOL.md §10): other programs and other users write
into it. Every folder is opened once, relative to the workspace root, with
O_NOFOLLOW | O_DIRECTORY, and every file operation is relative to those descriptors,
so a symbolic link planted anywhere inside the workspace (a folder, a task file, a
log, a state file) is never followed, whoever planted it and whenever. The root
itself may be a link: it is resolved once, when first opened. Folders and files are
created with fixed modes (fs.DIR_MODE, fs.FILE_MODE) whatever the umask.

This module lists, reads and writes records; store.py alone moves task files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from . import json_rules
from .errors import DropSiteError
from .fs import (
    DIR_MODE,
    FILE_MODE,
    GONE,
    NOT_A_FOLDER,
    O_CLOEXEC,
    OPEN_APPEND,
    OPEN_DIR,
    UMASK,
    BadFile,
    StorageError,
    is_gone,
    read_bytes,
    unlink_quietly,
    write_file,
)
from .holder import SEP, this_host

TASK_FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback")
META_FOLDERS = ("agents",)
QUARANTINE = "quarantine"
STATE_DIR = ".dropsited"
CONTROL_DIR = f"{STATE_DIR}/control"  # control requests to the daemon (control.py)
AGENT_LOGS = "agents/logs"  # where the daemon keeps agents' logs unless a manifest says
MAX_RECORD_BYTES = 1 << 20  # agent and status records, quarantine reasons
T = TypeVar("T")


class UnsafeWorkspace(DropSiteError):
    """A workspace folder that is a symbolic link, not a directory, or not ours."""


class WorkspaceFolders:
    """Descriptors of a workspace's folders, and the reads and writes that use them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root_fd: int | None = None
        self._fds: dict[str, int] = {}  # folder ("inbox", "agents/logs") -> O_NOFOLLOW fd
        self._fd_lock = threading.Lock()

    # -- descriptors -----------------------------------------------------------
    def root_fd(self) -> int:
        """The workspace root, opened once: a root that is a link is resolved here only."""
        fd = self._root_fd
        if fd is None:
            with self._fd_lock:
                if self._root_fd is None:
                    self._root_fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                                            | O_CLOEXEC)
                fd = self._root_fd
        return fd

    def fd(self, folder: str) -> int:
        """A descriptor of a folder inside the workspace, never through a link.

        FileNotFoundError when it does not exist; UnsafeWorkspace when it is a link
        or not a directory."""
        fd = self._fds.get(folder)
        if fd is not None:
            return fd
        opened = self._open_folder(folder)
        with self._fd_lock:
            fd = self._fds.setdefault(folder, opened)
        if fd != opened:
            os.close(opened)  # another thread was first
        return fd

    def _open_folder(self, folder: str) -> int:
        """A new descriptor of `folder` (the caller closes it)."""
        parent, _, name = folder.rpartition("/")
        base = self.fd(parent) if parent else self.root_fd()
        try:
            return os.open(name, OPEN_DIR, dir_fd=base)
        except OSError as exc:
            where = self.root / folder
            if is_gone(exc):
                raise FileNotFoundError(errno.ENOENT, "no such folder", str(where)) from None
            if exc.errno in NOT_A_FOLDER:
                raise UnsafeWorkspace(f"{where}: is a symbolic link or not a directory "
                                      "(refused: nothing inside a workspace is followed)") from None
            raise StorageError(f"cannot open {where}: {exc.strerror}", exc.errno) from None

    def revalidate(self) -> None:
        """Forget folder descriptors whose name now names another folder (removed and
        made again, or renamed away): the next use reopens it by name."""
        with self._fd_lock:
            for folder, fd in sorted(self._fds.items(), key=lambda kv: -kv[0].count("/")):
                parent, _, name = folder.rpartition("/")
                base = self._fds.get(parent) if parent else self._root_fd
                try:
                    now, held = os.lstat(name, dir_fd=base), os.fstat(fd)
                    if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                        continue
                except (OSError, TypeError):
                    pass
                del self._fds[folder]
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close(self) -> None:
        """Close every descriptor (reopened when next needed)."""
        with self._fd_lock:
            fds, self._fds = list(self._fds.values()), {}
            if self._root_fd is not None:
                fds.append(self._root_fd)
                self._root_fd = None
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def retrying(self, folder: str, action: Callable[[int], T]) -> T:
        """`action(fd)`; when the folder was removed and made again meanwhile (a create in
        the dead folder fails with ENOENT), reopen it by name once and retry."""
        try:
            return action(self.fd(folder))
        except StorageError as exc:
            if exc.errno not in GONE:
                raise
            self.revalidate()
            return action(self.fd(folder))

    # -- layout ------------------------------------------------------------------
    def path(self, folder: str, name: str = "") -> Path:
        """The path of an entry, for messages and for agents; never opened by path here."""
        return self.root / folder / name if name else self.root / folder

    def make_folder(self, folder: str) -> bool:
        """Create a folder inside the workspace with DIR_MODE whatever the umask; True if new."""
        parent, _, name = folder.rpartition("/")
        base = self.fd(parent) if parent else self.root_fd()
        try:
            os.mkdir(name, DIR_MODE, dir_fd=base)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot create {self.path(folder)}: {exc.strerror}",
                               exc.errno) from None
        if DIR_MODE & ~UMASK != DIR_MODE:
            with contextlib.suppress(OSError, DropSiteError):
                os.fchmod(self.fd(folder), DIR_MODE)
        return True

    def create_layout(self) -> None:
        """The seven folders (quarantine/ appears when first needed), 0755 whatever the
        umask (a group-writable inbox/ would let others drop tasks); refuses links."""
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for name in TASK_FOLDERS + META_FOLDERS:
            self.make_folder(name)
            self.fd(name)  # UnsafeWorkspace if it is a link

    def is_workspace(self) -> bool:
        try:
            for name in TASK_FOLDERS:
                self.fd(name)
        except (OSError, DropSiteError):
            return False
        return True

    def layout_problems(self, owners: tuple[int, ...] | None = None) -> list[str]:
        """Why this workspace is unsafe to serve, one line each: folders that are links
        or not directories, and (with `owners`) folders owned by anyone else."""
        problems = []
        for folder in (*TASK_FOLDERS, *META_FOLDERS, AGENT_LOGS, QUARANTINE, STATE_DIR,
                       CONTROL_DIR):
            parent, _, name = folder.rpartition("/")
            try:
                info = os.lstat(name, dir_fd=self.fd(parent) if parent else self.root_fd())
            except (FileNotFoundError, DropSiteError):
                continue
            where = self.path(folder)
            if stat.S_ISLNK(info.st_mode):
                problems.append(f"{where}: is a symbolic link (refused: nothing inside a "
                                "workspace is followed)")
            elif not stat.S_ISDIR(info.st_mode):
                problems.append(f"{where}: is not a directory")
            elif owners is not None and info.st_uid not in owners:
                problems.append(f"{where}: is owned by uid {info.st_uid}, not by this user "
                                f"(uid {os.geteuid()}) or root (refused: its owner could "
                                "swap what the daemon reads and writes)")
        return problems

    # -- listing and reading -------------------------------------------------------
    def entries(self, folder: str) -> Iterator[os.DirEntry]:
        """The entries of a folder (a fresh descriptor per listing, so threads may list
        at once). `entry.path` is only the name here: `path(folder, name)` for messages."""
        try:
            fd = self._open_folder(folder)
        except FileNotFoundError:
            return
        try:
            with os.scandir(fd) as it:
                yield from it
        except OSError as exc:
            if not is_gone(exc):
                raise
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def lstat(self, folder: str, name: str) -> os.stat_result | None:
        """lstat of `folder/name`; None when it (or its folder) is gone."""
        try:
            return os.lstat(name, dir_fd=self.fd(folder))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if is_gone(exc):
                return None
            raise

    def exists(self, folder: str, name: str) -> bool:
        return self.lstat(folder, name) is not None

    def read(self, folder: str, name: str, max_bytes: int) -> bytes:
        """The bytes of `folder/name`, never through a link: FileNotFoundError or BadFile."""
        try:
            fd = self.fd(folder)
        except FileNotFoundError:
            raise
        except DropSiteError as exc:
            raise BadFile(self.path(folder, name), str(exc)) from None
        return read_bytes(name, max_bytes, dir_fd=fd)

    # -- records (agents/, .dropsited/) --------------------------------------------
    def write_record(self, folder: str, name: str, data: bytes) -> None:
        """Replace a small record atomically (a temp file renamed over it): the one writer
        of agent and status records. Renaming over is right for records, which are
        snapshots, not tasks. The temp name names host, pid and thread: hosts share
        folders, and threads of one daemon write records too."""
        tmp = f".{name}{SEP}{this_host()}{SEP}{os.getpid()}{SEP}{threading.get_ident()}.tmp"

        def write(fd: int) -> None:
            write_file(tmp, data, False, dir_fd=fd)
            try:
                os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError as exc:
                unlink_quietly(tmp, fd)
                raise StorageError(f"cannot write {self.path(folder, name)}: {exc.strerror}",
                                   exc.errno) from None

        try:
            self.retrying(folder, write)
        except FileNotFoundError:
            raise StorageError(f"cannot write {self.path(folder, name)}: no such folder",
                               errno.ENOENT) from None

    def write_json_record(self, folder: str, name: str, record: dict) -> None:
        self.write_record(folder, name, json_rules.dumps(record) + b"\n")

    def read_record(self, folder: str, name: str) -> dict | None:
        """A small JSON record; None when missing or not a JSON object (never raises)."""
        try:
            data = json_rules.loads(self.read(folder, name, MAX_RECORD_BYTES))
        except (OSError, DropSiteError):
            return None
        return data if isinstance(data, dict) else None

    def records(self, folder: str) -> list[dict]:
        """Every `*.json` record of a folder that is a JSON object."""
        out = []
        for entry in self.entries(folder):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                record = self.read_record(folder, entry.name)
                if record is not None:
                    out.append(record)
        return out

    def append_line(self, name: str, line: bytes, durable: bool) -> None:
        """Append one line to a log file at the workspace root, never through a link."""
        try:
            fd = os.open(name, OPEN_APPEND, FILE_MODE, dir_fd=self.root_fd())
        except OSError as exc:
            raise StorageError(f"cannot open {self.root / name}: {exc.strerror}", exc.errno) from None
        try:
            if os.fstat(fd).st_size == 0 and FILE_MODE & ~UMASK != FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # just created: the mode is fixed, whatever the umask
            os.write(fd, line)
            if durable:
                os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {self.root / name}: {exc.strerror}",
                               exc.errno) from None
        finally:
            os.close(fd)
