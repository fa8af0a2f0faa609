"""What the daemon publishes for `cat`, `dropsited status` and service managers.

- `<workspace>/agents/<name>.json`: one record per agent (0.1.0's registry
  fields plus state, pids, uptime, restarts, task counts, last error);
- `<workspace>/.dropsited/daemon.json`: the daemon itself (pid, manifest,
  queue depths); the workspace root itself is flock'ed while it runs, so two
  daemons never share a workspace and a stale record is recognisable.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..protocol import DropSite, DropSiteError
from ..protocol.folders import STATE_DIR, WorkspaceFolders
from ..protocol.holder import process_start, this_host
from ..protocol.task import utcnow_iso


class WorkspaceLocked(DropSiteError):
    """Another daemon already runs on this workspace."""


def state_dir(workspace: Path) -> Path:
    return workspace / STATE_DIR


def _lock_fd(workspace: Path) -> int:
    """A new descriptor of the workspace root: the daemon's lock is an flock on the root
    itself, which `rm -rf .dropsited` cannot take away (a lock file inside could be)."""
    return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class DaemonLock:
    """An flock on the workspace root: released by the kernel when the daemon dies, even by SIGKILL."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = _lock_fd(self.workspace)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            record = read_daemon_record(self.workspace) or {}
            raise WorkspaceLocked(
                f"{self.workspace}: another dropsited (pid {record.get('pid', '?')}) "
                "is already running on this workspace") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def daemon_running(workspace: Path) -> bool:
    """True while some process holds the workspace lock."""
    try:
        fd = _lock_fd(workspace)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_daemon_record(ds: DropSite, record: dict) -> None:
    """`.dropsited/daemon.json`, made again if someone removed the folder."""
    ds.store.make_folder(STATE_DIR)
    ds.store.write_json_record(STATE_DIR, "daemon.json", record)


def read_daemon_record(workspace: Path) -> dict | None:
    return WorkspaceFolders(workspace).read_record(STATE_DIR, "daemon.json")


def daemon_identity(manifest: Path) -> dict:
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid), "host": this_host(),
            "manifest": str(manifest), "started_at": utcnow_iso(), "started_mono": time.monotonic()}


def write_agent_record(ds: DropSite, name: str, record: dict, registered_at: str) -> None:
    """agents/<name>.json, keeping 0.1.0's registry keys first so 0.1.0 readers see them."""
    data = {"name": name, "role": record.get("role", "worker"), "registered_at": registered_at,
            "last_seen": utcnow_iso(), **record}
    ds.write_agent_record(name, data)
