"""The only module that creates, moves or removes task files.

Every move follows one pattern, chosen for crash safety and for ext4 speed:

1. write the task's new content to a fresh hidden temp name in the
   destination folder (`.<id>~<host>~<pid>~<start>.tmp`), fsync it if durable;
2. unlink the source file: the commit point. Only one process can unlink a
   given file, so a holder and a reaper racing for the same task cannot both
   win, and the loser learns it from FileNotFoundError;
3. rename the temp file to `<id>.json`, a name that does not exist yet, and
   fsync the destination folder if durable.

Nothing is ever renamed over an existing file (on ext4 that forces a data
flush, which made 0.1.0's rewrite-in-place five times slower). A crash
between 2 and 3 leaves the task only as the temp file of a dead writer;
`recover_temp_files` promotes it. A crash between 1 and 2 leaves a temp file
whose task still exists elsewhere; recovery deletes it.

A claim is one rename of `inbox/<id>.json` into active/ under a name that
encodes the holder (see holder.py), so it needs no content write at all.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ClaimLost, DropSiteError, InvalidTask, TaskNotFound
from .holder import SEP, Holder, parse_active_name, process_start, this_host
from .names import is_valid_task_id
from .task import Task, utcnow_iso

TASK_FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback")
META_FOLDERS = ("agents",)
QUARANTINE = "quarantine"
LATE_RESULTS = "late-results.jsonl"
DEFAULT_MAX_TASK_BYTES = 4 * 1024 * 1024

_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class BadFile(DropSiteError):
    """A directory entry that is not a readable task; `reason` says why, in one line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class StorageError(DropSiteError):
    """The file system refused a write (disk full, read-only, permissions)."""


@dataclass
class Located:
    """Where a task file is: its folder, its path, and its holder if it is in active/."""

    folder: str
    path: Path
    task_id: str
    holder: Holder | None = None


_temp_tag: tuple[int, str] | None = None


def _my_temp_tag() -> str:
    """host~pid~start of this process, read from /proc once per process (not per move)."""
    global _temp_tag
    pid = os.getpid()
    if _temp_tag is None or _temp_tag[0] != pid:  # first call, or a forked child
        _temp_tag = (pid, SEP.join((this_host(), str(pid), str(process_start(pid) or 0))))
    return _temp_tag[1]


def temp_name(task_id: str) -> str:
    return f".{task_id}{SEP}{_my_temp_tag()}.tmp"


def parse_temp_name(name: str) -> tuple[str, str, int, int] | None:
    """(task id, host, pid, start) of one of our temp files, else None."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:-4].split(SEP)
    if len(parts) != 4:
        return None
    try:
        return parts[0], parts[1], int(parts[2]), int(parts[3])
    except ValueError:
        return None


def read_bytes(path: Path | str, max_bytes: int) -> bytes:
    """Read a regular file without following links, blocking on FIFOs or reading huge files."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadFile(path, "is a symbolic link (never followed)") from None
        raise BadFile(path, f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadFile(path, "is not a regular file")
        if info.st_size > max_bytes:
            raise BadFile(path, f"is {info.st_size} bytes, over the {max_bytes}-byte limit")
        # Ask for one byte more than the size: a short read is end of file, so
        # the usual case costs one read() instead of two.
        first = os.read(fd, info.st_size + 1)
        if len(first) <= info.st_size:
            return first
        chunks, total = [first], len(first)
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise BadFile(path, f"grew past the {max_bytes}-byte limit while read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path | str, data: bytes, durable: bool) -> None:
    """Create `path` (which must not exist) with `data`; remove it again if anything fails."""
    try:
        fd = os.open(path, _OPEN_NEW, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(path)
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)


def _unlink_quietly(path: Path | str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class TaskStore:
    """File operations on one workspace. The DropSite facade adds task semantics."""

    def __init__(self, root: Path, durable: bool = True,
                 max_task_bytes: int = DEFAULT_MAX_TASK_BYTES) -> None:
        self.root = Path(root)
        self.durable = durable
        self.max_task_bytes = max_task_bytes
        # Folder paths as strings: the per-task moves join names onto these
        # instead of building pathlib objects (measurably slower at 10k tasks/s).
        self._dirs = {name: os.path.join(self.root, name) for name in TASK_FOLDERS}
        self._dir_fds: dict[str, int] = {}  # durable mode: folders kept open for fsync

    def _folder_str(self, folder: str) -> str:
        return self._dirs.get(folder) or os.path.join(self.root, folder)

    def _fsync_folder(self, folder: str) -> None:
        """fsync a task folder through a descriptor opened once, not per move."""
        fd = self._dir_fds.get(folder)
        if fd is None:
            fd = os.open(self._folder_str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                         | getattr(os, "O_CLOEXEC", 0))
            self._dir_fds[folder] = fd
        os.fsync(fd)

    def close(self) -> None:
        """Close the folder descriptors kept for fsync (reopened when needed)."""
        fds, self._dir_fds = self._dir_fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()

    # -- layout -------------------------------------------------------------
    def folder(self, name: str) -> Path:
        return self.root / name

    def create_layout(self) -> None:
        for name in TASK_FOLDERS + META_FOLDERS:  # quarantine/ appears when first needed
            # 0o755 whatever the umask: a group-writable inbox/ would let others drop tasks.
            (self.root / name).mkdir(mode=0o755, parents=True, exist_ok=True)

    def is_workspace(self) -> bool:
        return all((self.root / name).is_dir() for name in TASK_FOLDERS)

    # -- reading ------------------------------------------------------------
    def load(self, path: Path | str) -> Task:
        """Parse a task file; BadFile/InvalidTask say what is wrong. Holder comes from the name."""
        raw = read_bytes(path, self.max_task_bytes)
        folder, name = os.path.split(path)
        parsed = parse_active_name(name) if os.path.basename(folder) == "active" else None
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

    def entries(self, folder: str) -> Iterator[os.DirEntry]:
        try:
            with os.scandir(self.root / folder) as it:
                yield from it
        except FileNotFoundError:
            return

    def locate(self, task_id: str, folders: tuple[str, ...] = TASK_FOLDERS) -> Located | None:
        """Find the one file that holds `task_id`, whichever folder it is in."""
        for folder in folders:
            path = self.root / folder / f"{task_id}.json"
            if os.path.lexists(path):
                return Located(folder, path, task_id)
            if folder == "active":
                prefix = task_id + SEP
                for entry in self.entries("active"):
                    if entry.name.startswith(prefix):
                        parsed = parse_active_name(entry.name)
                        if parsed and parsed[0] == task_id:
                            return Located("active", Path(entry.path), task_id, parsed[1])
        return None

    # -- writing ------------------------------------------------------------
    def create(self, folder: str, task: Task) -> Path:
        """Place a new task; refuses to replace an existing file with the same id."""
        final = self.root / folder / f"{task.id}.json"
        tmp = self.root / folder / temp_name(task.id)
        write_file(tmp, task.to_json(), self.durable)
        try:
            os.link(tmp, final)
        except FileExistsError:
            _unlink_quietly(tmp)
            raise DropSiteError(f"{final}: a task with id {task.id} already exists") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                _unlink_quietly(tmp)
                raise StorageError(f"cannot place {final}: {exc.strerror}") from None
            os.rename(tmp, final)  # file systems without hard links
        else:
            os.unlink(tmp)
        if self.durable:
            self._fsync_folder(folder)
        return final

    def move(self, src: Path | str, dest_folder: str, task: Task, held: bool) -> Path:
        """Commit `task` (new content) to `dest_folder` and remove `src`, crash-safely.

        `held`: the caller claimed `src`; losing it raises ClaimLost, else TaskNotFound.
        """
        folder = self._folder_str(dest_folder)
        final = f"{folder}/{task.id}.json"
        tmp = f"{folder}/{temp_name(task.id)}"
        write_file(tmp, task.to_json(), self.durable)
        try:
            os.unlink(src)
        except FileNotFoundError:
            _unlink_quietly(tmp)
            if held:
                raise ClaimLost(f"task {task.id} is no longer held at {src}") from None
            raise TaskNotFound(f"task {task.id} is no longer at {src}") from None
        os.rename(tmp, final)
        if self.durable:
            self._fsync_folder(dest_folder)
        return Path(final)

    def claim(self, src: Path | str, task_id: str, holder: Holder) -> Path | None:
        """Rename `src` into active/ under the holder's name; None if someone else won."""
        dest = f"{self._dirs['active']}/{holder.file_name(task_id)}"
        try:
            if not stat.S_ISREG(os.lstat(src).st_mode):
                return None
            os.rename(src, dest)
        except FileNotFoundError:
            return None
        return Path(dest)

    def unclaim(self, active_path: Path, task_id: str) -> bool:
        """Undo a claim that wrote nothing: rename back to inbox/<id>.json."""
        try:
            os.rename(active_path, self.root / "inbox" / f"{task_id}.json")
        except FileNotFoundError:
            return False
        return True

    # -- quarantine and logs --------------------------------------------------
    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move a bad entry (never following links) to quarantine/ beside a `.reason` file."""
        qdir = self.root / QUARANTINE
        qdir.mkdir(mode=0o755, exist_ok=True)  # made when first needed, never group-writable
        name = path.name.lstrip(".") or "unnamed"
        dest = qdir / name
        if os.path.lexists(dest) or os.path.lexists(qdir / (name + ".reason")):
            dest = qdir / f"{int(time.time() * 1000)}-{os.getpid()}-{name}"
        try:
            info = os.lstat(path)
            os.rename(path, dest)
        except FileNotFoundError:
            return None
        record = {
            "file": f"{path.parent.name}/{path.name}",
            "quarantined_as": dest.name,
            "error": reason,
            "size": info.st_size,
            "at": utcnow_iso(),
        }
        # The file itself is safe in quarantine/; its reason is best effort.
        with contextlib.suppress(StorageError):
            write_file(dest.with_name(dest.name + ".reason"),
                       json.dumps(record, indent=2).encode() + b"\n", self.durable)
        return dest

    def quarantined(self) -> list[dict]:
        records = []
        for entry in self.entries(QUARANTINE):
            if entry.name.endswith(".reason"):
                try:
                    records.append(json.loads(read_bytes(Path(entry.path), 1 << 20)))
                except (OSError, ValueError, DropSiteError):
                    records.append({"quarantined_as": entry.name[:-7], "error": "reason unreadable"})
        return sorted(records, key=lambda r: str(r.get("at", "")))

    def log_late_result(self, record: dict) -> None:
        """Append one JSON line for a result that arrived after its claim was lost."""
        line = json.dumps(record, default=str, ensure_ascii=False).encode() + b"\n"
        fd = os.open(self.root / LATE_RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    # -- recovery -----------------------------------------------------------
    def _temp_problem(self, path: Path, task_id: str) -> str | None:
        """Why a temp file is not a complete task with this id, or None if it is."""
        try:
            task = Task.from_json(read_bytes(path, self.max_task_bytes), default_id=task_id)
        except (BadFile, InvalidTask) as exc:
            return getattr(exc, "reason", str(exc))
        except FileNotFoundError:
            return "vanished"
        return None if task.id == task_id else f"id {task.id!r} does not match"

    def recover_temp_files(self, min_age: float = 0.0) -> list[str]:
        """Finish or discard the temp files of writers that died mid-move.

        A dead writer's temp file whose task exists nowhere else was committed
        (step 2 happened): promote it. Otherwise it was never committed: remove it.
        Returns a line per action, for logs.
        """
        host, now, actions = this_host(), time.time(), []
        for folder in TASK_FOLDERS:
            for entry in list(self.entries(folder)):
                parsed = parse_temp_name(entry.name)
                if not parsed:
                    continue
                task_id, t_host, pid, start = parsed
                if t_host != host or _writer_alive(pid, start):
                    continue
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                        continue
                except FileNotFoundError:
                    continue
                path = Path(entry.path)
                if self.locate(task_id) is not None:
                    _unlink_quietly(path)
                    actions.append(f"removed uncommitted temp file {folder}/{entry.name}")
                elif (problem := self._temp_problem(path, task_id)) is not None:
                    # A submit killed mid-write leaves a partial temp file and no
                    # other copy: promoting it would put a corrupt file in inbox/.
                    self.quarantine(path, f"unfinished write of {task_id}: {problem}")
                    actions.append(f"quarantined unreadable temp file {folder}/{entry.name}")
                else:
                    try:
                        os.rename(path, self.root / folder / f"{task_id}.json")
                    except FileNotFoundError:
                        continue
                    actions.append(f"completed interrupted move of {task_id} into {folder}/")
        return actions


def _writer_alive(pid: int, start: int) -> bool:
    current = process_start(pid)
    return current is not None and (start == 0 or current == start)


def apply_claim(task: Task, holder: Holder) -> None:
    """Give an in-memory task the state 0.1.0 would have written at claim time."""
    task.assigned_before_claim = task.assigned_to
    task.holder = holder
    task.log("active", at=utcnow_iso(holder.claimed_at), **holder.as_entry())
    task.assigned_to = holder.agent
