"""Can this file system give "one task, one folder"? A few checks in a scratch folder.

Some network file systems answer calls they did not carry out: smbnetfs reported
success for a second O_EXCL create of one name, a second rename of one source and a
second unlink of one file; rclone mounts answer link() with EIO and have no
RENAME_NOREPLACE. dropsited's commit points rely on those answers, so the daemon runs
these checks at start and refuses a workspace that fails one, with a one-line error
naming the check and docs/HOSTS.md's list of supported file systems.

A few file systems pass every check made from one host and still cannot give it across
hosts; they are refused by their mount type (KNOWN_UNSAFE), with the reason measured on
tests/multihost's bed.
"""

from __future__ import annotations

import contextlib
import errno
import os

from .errors import DropSiteError
from .folders import STATE_DIR
from .fs import (
    OPEN_APPEND,
    StorageError,
    is_gone,
    renameat2_noreplace,
    unlink_quietly,
    write_file,
)
from .holder import SEP, this_host
from .mounts import mount_of

DOCS = "docs/HOSTS.md, 'Supported file systems'"
# Mount types (mountinfo) refused whatever the checks find, and why.
KNOWN_UNSAFE = {
    # rclone's VFS keeps a directory cache (--dir-cache-time, 5 min): a folder or task
    # another host made stays invisible, one it moved stays listed, and its
    # RENAME_NOREPLACE is only the kernel's look at that cache, then a plain SFTP rename.
    "fuse.rclone": "is an rclone mount, whose directory cache hides other hosts' changes "
                   "for minutes and whose no-replace rename is a check and a rename",
}


def probe(store) -> list[str]:
    """What this workspace's file system does wrong, one line each (empty: all good).

    `store`: a TaskStore (its rename_noreplace is the one the moves use)."""
    mount = mount_of(store.root)
    if mount is not None and mount.fstype in KNOWN_UNSAFE:
        return [f"{store.root}: the file system {KNOWN_UNSAFE[mount.fstype]} (see {DOCS})"]
    store.make_folder(STATE_DIR)
    scratch = f"{STATE_DIR}/probe{SEP}{this_host()}{SEP}{os.getpid()}"
    try:
        store.make_folder(scratch)
        fd = store.fd(scratch)
    except (OSError, DropSiteError) as exc:
        return [f"{store.path(STATE_DIR)}: cannot make a scratch folder: {exc}"]
    problems: list[str] = []
    try:
        for check in (_exclusive_create, _rename_once, _unlink_once, _no_replace, _append):
            problem = _run(check, store, fd)
            if problem:
                problems.append(f"{store.root}: the file system {problem} (see {DOCS})")
    finally:
        # A file system that failed a check may fail its clean-up too (smbnetfs answers
        # EIO): the problems found are the answer, not the clean-up's error.
        with contextlib.suppress(OSError, DropSiteError):
            for entry in list(store.entries(scratch)):
                unlink_quietly(entry.name, fd)
        with contextlib.suppress(OSError, DropSiteError):
            store.revalidate()
            os.rmdir(scratch.rsplit("/", 1)[1], dir_fd=store.fd(STATE_DIR))
    return problems


def _run(check, store, fd: int) -> str | None:
    """One check; an error it did not expect is itself the problem (smbnetfs answers
    EIO to a scratch file's open for append, chmod or stat)."""
    try:
        return check(store, fd)
    except (OSError, DropSiteError) as exc:
        what = check.__name__.strip("_").replace("_", " ")
        return f"failed the {what} check: {getattr(exc, 'strerror', None) or exc}"


def _exclusive_create(store, fd: int) -> str | None:
    write_file("a", b"a", False, dir_fd=fd)
    try:
        write_file("a", b"b", False, dir_fd=fd)
    except StorageError as exc:
        return None if exc.errno == errno.EEXIST else f"refused a create: {exc}"
    return "let an O_EXCL create replace an existing file (two submits of one id would both win)"


def _rename_once(store, fd: int) -> str | None:
    write_file("r1", b"r", False, dir_fd=fd)
    os.rename("r1", "r2", src_dir_fd=fd, dst_dir_fd=fd)
    try:
        os.rename("r1", "r3", src_dir_fd=fd, dst_dir_fd=fd)
    except OSError as exc:
        return None if is_gone(exc) else f"answered a second rename with {exc.strerror}"
    return "renamed a file that had already been renamed away (two hosts could both move a task)"


def _unlink_once(store, fd: int) -> str | None:
    write_file("u", b"u", False, dir_fd=fd)
    os.unlink("u", dir_fd=fd)
    try:
        os.unlink("u", dir_fd=fd)
    except OSError as exc:
        return None if is_gone(exc) else f"answered a second unlink with {exc.strerror}"
    return "unlinked a file that was already gone (two movers could both commit)"


def _no_replace(store, fd: int) -> str | None:
    """A final name must be given without replacing a task there: RENAME_NOREPLACE, or
    a hard link (which fails on a taken name). A check and a plain rename is a race."""
    write_file("n1", b"1", False, dir_fd=fd)
    write_file("n2", b"2", False, dir_fd=fd)
    try:
        if renameat2_noreplace("n1", "n2", fd, fd):
            return "replaced a file where RENAME_NOREPLACE was asked for"
    except FileExistsError:
        return None
    except OSError as exc:
        return f"answered RENAME_NOREPLACE with {exc.strerror}"
    if not store.hard_links():
        return ("has neither RENAME_NOREPLACE nor hard links, so a new task cannot be "
                "placed without a race that could replace another")
    try:
        os.link("n1", "n2", src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None  # EEXIST, or EPERM (sshfs): refused, as it must be
    return "let a hard link replace an existing file"


def _append(store, fd: int) -> str | None:
    try:
        out = os.open("log", OPEN_APPEND, 0o644, dir_fd=fd)
    except OSError as exc:
        return f"cannot open a file for append ({exc.strerror}): agent logs need it"
    try:
        os.write(out, b"x\n")
    except OSError as exc:
        return f"cannot append to a file ({exc.strerror})"
    finally:
        os.close(out)
    return None
