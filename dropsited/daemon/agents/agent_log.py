"""Agent output logs: bounded by size with numbered backups, and readable live.

``RotatingLog`` receives raw bytes from an agent's stdout/stderr (via ``pump``) and
never lets one file pass ``max_bytes``: ``name.log`` rotates to ``name.log.1`` ...
``name.log.N`` and the oldest is dropped. ``tail`` and ``follow`` serve
``dropsited logs AGENT [-f]``; ``follow`` reopens the file when rotation replaced it
(a new inode) so ``-f`` keeps going across rotations without losing the old file's end.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ...protocol.folders import AGENT_LOGS
from ...protocol.holder import this_host

LOG_MODE = 0o640  # agent output may hold secrets: not for every local user
LOG_FOLDER = AGENT_LOGS  # in the workspace, unless the manifest's `log.file` says where
_OPEN_LOG = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def log_path(workspace: Path, agent: str, chosen: Path | None = None,
             shared: bool = False) -> Path:
    """Where an agent's log is (for the daemon, `dropsited logs` and the docs): the
    manifest's `log.file` if it chose one, else <workspace>/agents/logs/<agent>.log, or
    <agent>@<host>.log on a shared file system, where hosts may run agents of one name
    and O_APPEND does not make their lines atomic."""
    if chosen is not None:
        return chosen
    name = f"{agent}@{this_host()}.log" if shared else f"{agent}.log"
    return workspace / LOG_FOLDER / name


class RotatingLog:
    """Append-only byte log of at most ``max_bytes`` per file and ``backups`` old files.

    Thread-safe: the stdout and stderr pumps of one agent may share one log. Every
    file is opened relative to a descriptor of its folder and never through a link
    (``dir_fd``: the workspace's ``agents/logs``, opened without following links; by
    default the parent folder of ``path``), with LOG_MODE whatever the umask.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int,
                 dir_fd: int | None = None) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("need max_bytes > 0 and backups >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        if dir_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            dir_fd = os.dup(dir_fd)
        self._dir_fd = dir_fd
        self._file = self._open()
        self._size = self._file.tell()

    def _open(self) -> IO[bytes]:
        """The current log file, appended to; refuses a link (ELOOP) planted in its place."""
        fd = os.open(self.path.name, _OPEN_LOG, LOG_MODE, dir_fd=self._dir_fd)
        try:
            info = os.fstat(fd)
            if info.st_size == 0 and stat.S_IMODE(info.st_mode) != LOG_MODE:
                os.fchmod(fd, LOG_MODE)
        except OSError:
            pass
        return os.fdopen(fd, "ab")

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first if it would not fit in the current file.

        A chunk that fits in an empty file is never split, so a line written whole
        stays whole; only a chunk larger than ``max_bytes`` is cut. No file ever
        exceeds ``max_bytes``. Flushed at once so ``follow`` sees it.
        """
        with self._lock:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:
                if self._size >= self.max_bytes:
                    self._rotate()
                piece = view[: self.max_bytes - self._size]
                self._file.write(piece)
                self._size += len(piece)
                view = view[len(piece):]
            self._file.flush()

    def _rotate(self) -> None:
        """Shift ``.i`` to ``.i+1`` (dropping ``.N``), move the log to ``.1``, reopen."""
        self._file.close()
        fd, name = self._dir_fd, self.path.name
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
        else:
            for i in range(self.backups - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{name}.{i}", f"{name}.{i + 1}", src_dir_fd=fd, dst_dir_fd=fd)
            with contextlib.suppress(FileNotFoundError):
                os.rename(name, f"{name}.1", src_dir_fd=fd, dst_dir_fd=fd)
        self._file = self._open()
        self._size = 0

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):  # a full disk already refused the bytes
            self._file.close()
        with contextlib.suppress(OSError):
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fileno(source: int | IO[Any]) -> int:
    return source if isinstance(source, int) else source.fileno()


def pump_once(source: int | IO[Any], log: RotatingLog, chunk: int = 65536) -> bool:
    """Copy what is available now from ``source`` to ``log``; False at end of file.

    For a selector loop: call it when the fd is readable. It reads with ``os.read``, so
    a file object's Python buffer is bypassed (do not mix with ``.read()`` on it).
    """
    data = os.read(_fileno(source), chunk)
    if not data:
        return False
    log.write(data)
    return True


def pump(source: int | IO[Any], log: RotatingLog, chunk: int = 65536) -> int:
    """Copy ``source`` into ``log`` until end of file; return the bytes copied.

    For a thread per stream: ``Thread(target=pump, args=(child.stdout, log))``.
    The child's output arrives as it is written, with no timestamps added.
    """
    fd = _fileno(source)
    total = 0
    while data := os.read(fd, chunk):
        log.write(data)
        total += len(data)
    return total


def _read_back(path: Path, newlines: int, block: int = 8192) -> bytes:
    """The end of one file, read backwards until it holds ``newlines`` newlines."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return b""
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        while end > 0 and data.count(b"\n") < newlines:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    return data


def tail(path: str | os.PathLike[str], lines: int = 10) -> list[bytes]:
    """The last ``lines`` lines of a log, reaching into ``.1``, ``.2``... if needed.

    Files are joined before splitting, so a line cut by a rotation comes back whole.
    """
    if lines <= 0:
        return []
    path = Path(path)
    data = b""
    i = 0
    current = path
    while current.exists():
        data = _read_back(current, lines + 1) + data
        if data.count(b"\n") > lines:
            break
        i += 1
        current = path.with_name(f"{path.name}.{i}")
    return data.splitlines(keepends=True)[-lines:]


def follow(
    path: str | os.PathLike[str],
    from_end: bool = True,
    poll_interval: float = 0.1,
    stop: Callable[[], bool] | None = None,
) -> Iterator[bytes]:
    """Yield new bytes appended to ``path`` as they come, forever or until ``stop()``.

    ``stop`` is asked only when everything written so far was yielded.

    When the file at ``path`` is replaced (rotation: the inode changes) or truncated,
    the rest of the old file is yielded first, then the new file from its start.
    """
    path = Path(path)
    existed = path.exists()  # a file created after we started is all new: read it whole
    f = _open_when_present(path, poll_interval, stop)
    if f is None:
        return
    if from_end and existed:
        f.seek(0, os.SEEK_END)
    try:
        while True:
            data = f.read(65536)
            if data:
                yield data
                continue
            if _replaced(path, f):
                # The writer closes the old file before renaming it, so what it wrote
                # after our last read is there now and nothing more will come.
                rest = f.read()
                if rest:
                    yield rest
                following = _successor(path, os.fstat(f.fileno()).st_ino)
                f.close()
                try:
                    f = open(following, "rb")  # noqa: SIM115 - closed below
                except FileNotFoundError:  # rotated away meanwhile: take the live file
                    f = _open_when_present(path, poll_interval, stop)
                if f is None:
                    return
                continue
            if stop is not None and stop():  # checked only once caught up
                return
            time.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _successor(path: Path, inode: int) -> Path:
    """The file written after the one with ``inode``: if a slow reader was passed by
    several rotations, its old file is now ``.N`` and the next one is ``.N-1``."""
    newer = path
    for i in range(1, 1000):
        backup = path.with_name(f"{path.name}.{i}")
        try:
            if os.stat(backup).st_ino == inode:
                return newer
        except FileNotFoundError:
            break
        newer = backup
    return path


def _replaced(path: Path, f: IO[bytes]) -> bool:
    """True if ``path`` now names another file than ``f``, or was truncated below it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True
    return st.st_ino != os.fstat(f.fileno()).st_ino or st.st_size < f.tell()


def _open_when_present(
    path: Path, poll_interval: float, stop: Callable[[], bool] | None
) -> IO[bytes] | None:
    """Open ``path`` for reading, waiting while it does not exist (mid-rotation)."""
    while True:
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            if stop is not None and stop():
                return None
            time.sleep(poll_interval)
