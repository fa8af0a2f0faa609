"""What the daemon publishes for `cat`, `dropsited status` and service managers.

- `<workspace>/agents/<name>.json`: one record per agent (0.1.0's registry
  fields plus state, pids, uptime, restarts, task counts, last error);
- `<workspace>/.dropsited/daemon.json`: the daemon itself (pid, manifest,
  queue depths); `<workspace>/.dropsited/lock` is flock'ed while it runs, so
  two daemons never share a workspace and a stale record is recognisable.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from ..protocol import DropSite, DropSiteError
from ..protocol.holder import process_start, this_host
from ..protocol.task import utcnow_iso

STATE_DIR = ".dropsited"


class WorkspaceLocked(DropSiteError):
    """Another daemon already runs on this workspace."""


def state_dir(workspace: Path) -> Path:
    return workspace / STATE_DIR


class DaemonLock:
    """An flock on `.dropsited/lock`: released by the kernel when the daemon dies, even by SIGKILL."""

    def __init__(self, workspace: Path) -> None:
        self.path = state_dir(workspace) / "lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            record = read_daemon_record(self.path.parent.parent) or {}
            raise WorkspaceLocked(
                f"{self.path.parent.parent}: another dropsited (pid {record.get('pid', '?')}) "
                "is already running on this workspace") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def daemon_running(workspace: Path) -> bool:
    """True while some process holds the workspace lock."""
    path = state_dir(workspace) / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(json.dumps(data, indent=2, default=str).encode() + b"\n")
    os.replace(tmp, path)


def write_daemon_record(workspace: Path, record: dict) -> None:
    write_json_atomic(state_dir(workspace) / "daemon.json", record)


def read_daemon_record(workspace: Path) -> dict | None:
    try:
        return json.loads((state_dir(workspace) / "daemon.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def daemon_identity(manifest: Path) -> dict:
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid), "host": this_host(),
            "manifest": str(manifest), "started_at": utcnow_iso(), "started_mono": time.monotonic()}


def write_agent_record(ds: DropSite, name: str, record: dict, registered_at: str) -> None:
    """agents/<name>.json, keeping 0.1.0's registry keys first so 0.1.0 readers see them."""
    data = {"name": name, "role": record.get("role", "worker"), "registered_at": registered_at,
            "last_seen": utcnow_iso(), **record}
    ds.write_agent_record(name, data)
