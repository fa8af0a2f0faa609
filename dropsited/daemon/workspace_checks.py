"""Before serving a workspace: refuse an unsafe one, warn about an open one."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..protocol import DropSite
from .context import log


def workspace_problems(ds: DropSite) -> list[str]:
    """Why the daemon must not serve this workspace, one line each (PROTOCOL.md §10):
    folders that are links, not directories, owned by another user, or not writable."""
    store = ds.store
    problems = store.layout_problems(owners=(os.geteuid(), 0))
    try:
        if os.statvfs(store.root_fd()).f_flag & os.ST_RDONLY:
            return problems + [f"{ds.workspace}: is on a read-only file system"]
    except OSError:
        pass
    for folder in ds.DIRS:
        try:
            writable = os.access(folder, os.W_OK | os.X_OK, dir_fd=store.root_fd())
        except (OSError, NotImplementedError):
            continue
        if not writable:
            problems.append(f"{ds.workspace / folder}: is not writable by this user "
                            f"(uid {os.geteuid()})")
    return problems


def modes(paths: Iterable[Path]) -> dict[Path, int | None]:
    """Modes read before DropSite() tightens the workspace root, so the warning below
    still tells the operator it was open."""
    return {path: _mode(path) for path in paths}


def warn_if_open(ds: DropSite, manifest: Path, modes_at_start: dict[Path, int | None]) -> None:
    """Anyone who can write the workspace, a task folder or the manifest can run
    commands as this daemon's user: say so at start."""
    ws = ds.workspace
    for path in [ws, manifest, *(ws / name for name in ds.DIRS)]:
        mode = modes_at_start.get(path) or _mode(path)
        if mode is not None and mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("%s is writable by %s: anyone who can write it can run commands "
                        "as this daemon's user", path,
                        "everyone" if mode & stat.S_IWOTH else "its group")


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None
