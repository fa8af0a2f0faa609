"""Hosts and leases: which machines serve a workspace, and whose claims are still good.

Each daemon keeps a record of its host in `.dropsited/hosts/<host>.json` (host name,
boot id and boot time, daemon pid and start time, version, lease length) and renews it
every few seconds by writing it again. A claim made on host H stays valid while H's
lease is fresh; once it has expired, or when H's record shows that H booted after the
claim was made, any host may reap H's claims (reaper.py).

Clocks of different hosts do not agree, so a lease's age is never measured with them:
the file server sets a file's mtime when it is written, so the age of a record is the
mtime of a file written now (the renewer's own record, or a probe file) minus the
record's mtime, two readings of one clock, the server's (docs/HOSTS.md).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import json_rules
from .errors import DropSiteError
from .folders import STATE_DIR, WorkspaceFolders
from .fs import is_gone, unlink_quietly, write_file
from .holder import SEP, process_start, this_boot, this_host
from .names import check_agent_name

HOSTS = f"{STATE_DIR}/hosts"
DEFAULT_LEASE = 20.0
MIN_LEASE = 3.0


class HostConflict(DropSiteError):
    """A live daemon already serves this workspace under this host name."""


@dataclass(frozen=True)
class HostRecord:
    """One host's record as read (`age`: seconds since it was written, server time)."""

    host: str
    boot_id: str
    boot_time: float
    pid: int
    pid_start: int
    lease: float
    age: float
    data: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def expired(self) -> bool:
        return self.age > self.lease

    @classmethod
    def parse(cls, data: dict, age: float) -> HostRecord | None:
        """A record from its JSON, None when a field is missing or of the wrong type."""
        try:
            host = data["host"]
            lease = float(data["lease"])
            record = cls(host, str(data.get("boot_id", "")), float(data.get("boot_time", 0)),
                         int(data["pid"]), int(data.get("pid_start") or 0),
                         max(MIN_LEASE, lease), age, data)
        except (KeyError, TypeError, ValueError):
            return None
        return record if isinstance(host, str) and host else None

    def is_this_process(self) -> bool:
        return (self.host == this_host() and self.boot_id == this_boot()[0]
                and self.pid == os.getpid() and self.pid_start == (process_start(self.pid) or 0))

    def daemon_alive_here(self) -> bool:
        """For a record of this host: its daemon process still runs (same boot)."""
        if self.host != this_host() or self.boot_id != this_boot()[0]:
            return False
        current = process_start(self.pid)
        return current is not None and current == self.pid_start


class HostView:
    """Every host record of a workspace at one instant, ages in server time."""

    def __init__(self, records: Iterable[HostRecord]) -> None:
        self.records = {r.host: r for r in records}

    def get(self, host: str) -> HostRecord | None:
        return self.records.get(host)

    def claim_gone(self, host: str, claimed_at: float) -> str | None:
        """Why a claim made on `host` at `claimed_at` (that host's clock) is dead, or None
        while it may be alive (or cannot be judged: no record, the stale rule applies)."""
        record = self.records.get(host)
        if record is None:
            return None
        if record.boot_time and claimed_at < record.boot_time - 1.0:
            return "holder_rebooted"
        if record.expired:
            return "host_lease_expired"
        return None

    def has(self, host: str) -> bool:
        return host in self.records


class HostRegistry:
    """Reads and writes `.dropsited/hosts/`."""

    def __init__(self, folders: WorkspaceFolders) -> None:
        self.folders = folders

    def _ensure(self) -> int:
        """`.dropsited/hosts/`, made again if someone removed it."""
        self.folders.revalidate()
        self.folders.make_folder(STATE_DIR)
        self.folders.make_folder(HOSTS)
        return self.folders.fd(HOSTS)

    def server_now(self) -> float:
        """The file server's current time: the mtime of a probe file written now."""
        fd = self._ensure()
        probe = f".clock{SEP}{this_host()}{SEP}{os.getpid()}.tmp"
        unlink_quietly(probe, fd)
        write_file(probe, b"", False, dir_fd=fd)
        try:
            return os.stat(probe, dir_fd=fd, follow_symlinks=False).st_mtime
        finally:
            unlink_quietly(probe, fd)

    def view(self, now: float | None = None) -> HostView:
        """All host records, their ages against `now` (server time; probed when None)."""
        try:
            fd = self.folders.fd(HOSTS)
        except (OSError, DropSiteError):
            return HostView(())
        now = self.server_now() if now is None else now
        records = []
        for entry in self.folders.entries(HOSTS):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            data = self.folders.read_record(HOSTS, entry.name)
            try:
                mtime = os.stat(entry.name, dir_fd=fd, follow_symlinks=False).st_mtime
            except OSError:
                continue
            record = HostRecord.parse(data or {}, max(0.0, now - mtime))
            if record is not None and entry.name == f"{record.host}.json":
                records.append(record)
        return HostView(records)

    def record(self, lease: float, **extra: object) -> dict:
        boot_id, boot_time = this_boot()
        pid = os.getpid()
        return {"host": this_host(), "boot_id": boot_id, "boot_time": boot_time, "pid": pid,
                "pid_start": process_start(pid) or 0, "lease": lease, **extra}

    def register(self, lease: float, wait: float = 0.0, **extra: object) -> float:
        """Take this host's record for this daemon, exclusively; returns the server time.

        Refused (HostConflict) while a live daemon of this host holds it, or while
        another machine with the same host name keeps renewing it (watched for `wait`
        seconds when the record is not ours to judge). A record left by a dead daemon
        or an earlier boot is taken over.
        """
        fd = self._ensure()
        name = f"{this_host()}.json"
        data = json_rules.dumps(self.record(lease, **extra)) + b"\n"
        for _ in range(3):
            tmp = f".{name}{SEP}{os.getpid()}.new"
            unlink_quietly(tmp, fd)
            write_file(tmp, data, False, dir_fd=fd)
            try:
                self._place_new(tmp, name, fd)
                return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime
            except FileExistsError:
                unlink_quietly(tmp, fd)
            self._judge_existing(name, wait)
            self._retire(name, fd)
        raise HostConflict(f"{self.folders.path(HOSTS, name)}: could not take this host's "
                           "record (another daemon keeps replacing it)")

    def _place_new(self, tmp: str, name: str, fd: int) -> None:
        """Give `tmp` the name `name` only if no record has it (FileExistsError)."""
        store = getattr(self.folders, "rename_noreplace", None)
        if store is not None:
            store(tmp, name, fd, fd)
        else:  # a bare WorkspaceFolders: link, which fails if the name is taken
            os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            unlink_quietly(tmp, fd)

    def _judge_existing(self, name: str, wait: float) -> None:
        view = self.view()
        record = view.get(this_host())
        if record is None:
            return  # unreadable: a torn or foreign file, taken over
        where = self.folders.path(HOSTS, name)
        if record.daemon_alive_here():
            raise HostConflict(f"{where}: another dropsited (pid {record.pid}) is already "
                               "running for this host on this workspace")
        if record.boot_id == this_boot()[0] or record.expired:
            return  # a dead daemon of this boot, or a lease that ran out
        # Fresh lease, another boot id: this machine rebooted (its old record is still
        # fresh), or another machine uses the same name. Only the second keeps renewing.
        before = self._mtime(name)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if self._mtime(name) != before:
                raise HostConflict(
                    f"{where}: another machine (boot id {record.boot_id}, pid {record.pid}) "
                    f"serves this workspace under the host name {this_host()!r}; give each "
                    "host its own name")

    def _mtime(self, name: str) -> float | None:
        with contextlib.suppress(OSError, DropSiteError):
            return os.stat(name, dir_fd=self.folders.fd(HOSTS), follow_symlinks=False).st_mtime
        return None

    def _retire(self, name: str, fd: int) -> None:
        """Move an old record aside under a fresh name (exclusive on every file system),
        then remove it."""
        aside = f".{name}{SEP}retired{SEP}{os.getpid()}{SEP}{time.time_ns()}.tmp"
        try:
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            if not is_gone(exc):
                raise
            return
        unlink_quietly(aside, fd)

    def renew(self, record: dict) -> float:
        """Write this host's record again (our own, so replacing it is right); the new
        mtime, which is the server's time now."""
        fd = self._ensure()
        name = f"{this_host()}.json"
        self.folders.write_json_record(HOSTS, name, record)
        return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime

    def owns(self) -> bool:
        """Whether this host's record is still this process's (nobody took it over)."""
        record = self.view(now=time.time()).get(this_host())
        return record is not None and record.is_this_process()

    def withdraw(self) -> None:
        """A clean stop: remove this host's record if it is still ours."""
        with contextlib.suppress(OSError, DropSiteError):
            if self.owns():
                self._retire(f"{this_host()}.json", self.folders.fd(HOSTS))


def agent_file(name: str, shared: bool) -> str:
    """An agent's record file: `<name>.json`, or `<name>@<host>.json` on a shared file
    system, where two hosts may run agents of the same name."""
    check_agent_name(name)
    return f"{name}@{this_host()}.json" if shared else f"{name}.json"
