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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import DropSite, DropSiteError
from ..protocol.folders import STATE_DIR, WorkspaceFolders
from ..protocol.holder import process_start, this_host
from ..protocol.task import utcnow_iso
from ..service.sdnotify import Notifier, format_status
from .context import log_limited
from .supervision.states import AgentState

if TYPE_CHECKING:
    from .agents.agent_group import AgentGroup


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


class StatusPublisher:
    """Writes the records above for the daemon's loop, which says when.

    An agent's record is rewritten when it changed (uptimes aside) or when `force`d;
    daemon.json and the service manager's STATUS= line only when forced. A record that
    cannot be written (a full disk) must not stop the daemon: logged once a minute,
    written again once the disk takes writes.
    """

    def __init__(self, ds: DropSite, notifier: Notifier, identity: dict) -> None:
        self.ds = ds
        self.notifier = notifier
        self.identity = identity
        self.registered: dict[str, str] = {}
        self.published: dict[str, dict] = {}

    def publish(self, groups: Iterable[AgentGroup], now: float, force: bool = False) -> None:
        try:
            for group in groups:
                record = group.describe(now)
                comparable = {k: v for k, v in record.items() if k not in ("uptime", "instances")}
                if force or self.published.get(group.name) != comparable:
                    registered = self.registered.setdefault(group.name, utcnow_iso())
                    write_agent_record(self.ds, group.name, record, registered)
                    self.published[group.name] = comparable
        except (DropSiteError, OSError) as exc:
            log_limited("publish", f"cannot write status records: {exc}")

    def publish_daemon(self, state: str, groups: Mapping[str, AgentGroup],
                       watch_pid: int | None) -> None:
        try:
            counts = self.ds.stats()
            up = sum(1 for g in groups.values() if g.state(0) in (AgentState.RUNNING,
                                                                  AgentState.STARTING))
            summary = format_status(up, len(groups), counts)
            record = {**self.identity, "state": state, "workspace": str(self.ds.workspace),
                      "agents": sorted(groups), "queues": counts, "status": summary,
                      "death_watch_pid": watch_pid}
            write_daemon_record(self.ds, record)
        except (DropSiteError, OSError) as exc:
            log_limited("publish", f"cannot write status records: {exc}")
            return
        self.notifier.status(summary)
