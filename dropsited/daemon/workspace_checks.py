"""Before serving a workspace: refuse an unsafe one (or a file system that cannot give
"one task, one folder"), warn about an open one."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..protocol import DropSite, DropSiteError
from ..protocol.fsprobe import probe
from ..protocol.mounts import mount_of
from .context import log


def open_workspace(path: Path, durable: bool, retry_base: float | None,
                   corrupt_grace: float | None) -> DropSite:
    """The workspace a daemon serves. A workspace that is a link is resolved once, here:
    what the daemon serves cannot change under it."""
    options = {} if retry_base is None else {"retry_base": retry_base}
    if corrupt_grace is not None:
        options["corrupt_grace"] = corrupt_grace
    return DropSite(os.path.realpath(path), durable=durable, **options)


def refused(ds: DropSite) -> bool:
    """Log why the daemon must not start on this workspace, one line each; True if any."""
    problems = workspace_problems(ds) or probe_file_system(ds)
    for problem in problems:
        log.error("%s", problem)
    return bool(problems)


def warn_if_polled(ds: DropSite, poll: float) -> None:
    log.warning("%s is on a file system other hosts may share (%s): file-system events do "
                "not cross hosts, so inbox/ is polled every %gs (--poll SECONDS to change)",
                ds.workspace, mount_of(ds.workspace).describe(), poll)


def probe_file_system(ds: DropSite) -> list[str]:
    """fsprobe.py's checks of what the file system really does (docs/HOSTS.md)."""
    try:
        return probe(ds.store)
    except (OSError, DropSiteError) as exc:
        return [f"{ds.store.root}: cannot check what the file system does: {exc}"]


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
