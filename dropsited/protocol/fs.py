"""System calls as the workspace needs them: no links followed, fixed modes, no replace.

Nothing here knows what a task is. folders.py opens the workspace's folders with
these; store.py moves task files with them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from pathlib import Path

from .errors import DropSiteError

FILE_MODE = 0o644
DIR_MODE = 0o755

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
OPEN_READ = os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | O_CLOEXEC
OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | O_NOFOLLOW | O_CLOEXEC
OPEN_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC
GONE = (errno.ENOENT, errno.ESTALE)  # ESTALE: another NFS/GlusterFS client moved it
NOT_A_FOLDER = (errno.ELOOP, errno.ENOTDIR)  # O_NOFOLLOW|O_DIRECTORY met a link or a file
ON_LINUX = sys.platform.startswith("linux")


class BadFile(DropSiteError):
    """A directory entry that is not a readable task; `reason` says why, in one line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class StorageError(DropSiteError):
    """The file system refused a write (disk full, read-only, permissions)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def is_gone(exc: OSError) -> bool:
    """ENOENT, or ESTALE: on a network file system, a file another client moved."""
    return isinstance(exc, FileNotFoundError) or exc.errno in GONE


def _read_umask() -> int:
    """The process umask, without the set-and-restore race where /proc has it."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


UMASK = _read_umask()


def read_bytes(path: Path | str, max_bytes: int, dir_fd: int | None = None) -> bytes:
    """Read a regular file without following links, blocking on FIFOs or reading huge files.

    FileNotFoundError when it is gone (ESTALE included); BadFile for anything else."""
    try:
        fd = os.open(path, OPEN_READ, dir_fd=dir_fd)
    except OSError as exc:
        if is_gone(exc):
            raise FileNotFoundError(errno.ENOENT, "gone", str(path)) from None
        if exc.errno == errno.ELOOP:
            raise BadFile(path, "is a symbolic link (never followed)") from None
        raise BadFile(path, f"cannot open: {exc.strerror}") from None
    try:
        return _read_fd(fd, path, max_bytes)
    except OSError as exc:
        if is_gone(exc):
            raise FileNotFoundError(errno.ENOENT, "gone", str(path)) from None
        raise BadFile(path, f"cannot read: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):  # ESTALE on close of a file only read
            os.close(fd)


def _read_fd(fd: int, path: Path | str, max_bytes: int) -> bytes:
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


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path | str, data: bytes, durable: bool, dir_fd: int | None = None,
               mode: int = FILE_MODE) -> None:
    """Create `path` (which must not exist, nor be a link) with `data` and exactly `mode`
    whatever the umask; remove it again if anything fails."""
    try:
        fd = os.open(path, OPEN_NEW, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}", exc.errno) from None
    try:
        if mode & ~UMASK != mode:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        unlink_quietly(path, dir_fd)
        raise StorageError(f"cannot write {path}: {exc.strerror}", exc.errno) from None
    os.close(fd)


def unlink_quietly(path: Path | str, dir_fd: int | None = None) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path, dir_fd=dir_fd)


def _load_renameat2():
    if not ON_LINUX:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_no_renameat2 = False


def renameat2_noreplace(src: str, dst: str, src_dir_fd: int | None,
                        dst_dir_fd: int | None) -> bool:
    """`renameat2(RENAME_NOREPLACE)`: FileExistsError instead of replacing `dst`.

    False (nothing done) where the kernel or the file system lacks the flag."""
    global _no_renameat2
    if _renameat2 is None or _no_renameat2:
        return False
    res = _renameat2(_AT_FDCWD if src_dir_fd is None else src_dir_fd, os.fsencode(src),
                     _AT_FDCWD if dst_dir_fd is None else dst_dir_fd, os.fsencode(dst),
                     _RENAME_NOREPLACE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOSYS:  # the kernel has no renameat2: never ask again
        _no_renameat2 = True
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # EINVAL: this file system has no RENAME_NOREPLACE (never a race)
    raise OSError(err, os.strerror(err), dst)
