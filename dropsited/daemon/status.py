"""What the daemon publishes for `cat`, `dropsited status` and service managers.

- `<workspace>/agents/<name>.json`: one record per agent (0.1.0's registry
  fields plus state, pids, uptime, restarts, task counts, last error);
- `<workspace>/.dropsited/daemon.json`: the daemon itself (pid, manifest, queue
  depths), on a local file system; on a shared one each host's record
  (`.dropsited/hosts/<host>.json`, hosts.py) holds the same, so hosts never write
  one file. A lock (DaemonLock) keeps two daemons of one host off one workspace.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import DropSite, DropSiteError
from ..protocol.folders import STATE_DIR, WorkspaceFolders
from ..protocol.holder import process_start, this_host
from ..protocol.hosts import agent_file
from ..protocol.mounts import on_network
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


def _lock_fd(workspace: Path, shared: bool) -> int:
    """The file the daemon's lock is an flock on.

    Local file system: the workspace root itself, which `rm -rf .dropsited` cannot take
    away (a lock file inside could be). Shared file system: a file on this host's own
    disk, named by the workspace and the host name, because flocks inside the share are
    seen by every host (GlusterFS, NFS) or by none (sshfs); there, one daemon per host
    name is the host record's job (hosts.py)."""
    if not shared:
        return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return os.open(local_lock_path(workspace), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def local_lock_path(workspace: Path) -> Path:
    key = hashlib.sha256(os.path.realpath(workspace).encode()).hexdigest()[:16]
    base = Path("/run/dropsited") if os.geteuid() == 0 else Path(
        os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"dropsited-{os.geteuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base / f"{key}-{this_host()}.lock"


class DaemonLock:
    """An flock that the kernel releases when the daemon dies, even by SIGKILL: one
    daemon per workspace on a local file system, one per host on a shared one."""

    def __init__(self, workspace: Path, shared: bool = False) -> None:
        self.workspace = workspace
        self.shared = shared
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = _lock_fd(self.workspace, self.shared)
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


def daemon_running(workspace: Path, shared: bool | None = None) -> bool:
    """True while a daemon of this host holds the workspace lock."""
    shared = on_network(workspace) if shared is None else shared
    try:
        fd = _lock_fd(workspace, shared)
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
    """agents/<name>.json (agents/<name>@<host>.json on a shared file system, where two
    hosts may run agents of one name), keeping 0.1.0's registry keys first so 0.1.0
    readers see them."""
    data = {"name": name, "role": record.get("role", "worker"), "registered_at": registered_at,
            "last_seen": utcnow_iso(), "host": this_host(), **record}
    ds.store.write_json_record("agents", agent_file(name, ds.store.shared), data)


class StatusPublisher:
    """Writes the records above for the daemon's loop, which says when.

    An agent's record is rewritten when it changed (uptimes aside) or when `force`d;
    daemon.json and the service manager's STATUS= line only when forced. On a shared
    file system hosts never write one file: the daemon's record is `host_status`, which
    this host's lease record shows (host_lease.py). A record that cannot be written (a
    full disk) must not stop the daemon: logged once a minute, written again later.
    """

    def __init__(self, ds: DropSite, notifier: Notifier, identity: dict) -> None:
        self.ds = ds
        self.notifier = notifier
        self.identity = identity
        self.registered: dict[str, str] = {}
        self.published: dict[str, dict] = {}
        self.host_status: dict = {}

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
                       watch_pid: int | None, hooks: dict | None = None) -> None:
        try:
            counts = self.ds.stats()
            up = sum(1 for g in groups.values() if g.state(0) in (AgentState.RUNNING,
                                                                  AgentState.STARTING))
            summary = format_status(up, len(groups), counts)
            record = {**self.identity, "state": state, "workspace": str(self.ds.workspace),
                      "agents": sorted(groups), "queues": counts, "status": summary,
                      "death_watch_pid": watch_pid}
            if hooks is not None and hooks["hooks"]:
                record["hooks"] = hooks  # counters of the event hooks (docs/HOOKS.md)
            self.host_status = record
            if not self.ds.store.shared:
                write_daemon_record(self.ds, record)
        except (DropSiteError, OSError) as exc:
            log_limited("publish", f"cannot write status records: {exc}")
            return
        self.notifier.status(summary)
