"""Who holds a claimed task, encoded in the file name of its copy in active/.

A claim is a single rename of `inbox/<id>.json` to
`active/<id>~<agent>~<host>~<pid>~<start>~<claimed_ms>.json`, so the task and
the identity of its holder reach active/ in the same atomic step: a crash at
any instant leaves either an unclaimed task or a claim whose holder is known.
`start` is the holder process's start time, so a recycled pid does not pass
for the original holder.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

from .names import check_agent_name

SEP = "~"
_HOST_SAFE = re.compile(r"[^A-Za-z0-9.-]")


def this_host() -> str:
    return _HOST_SAFE.sub("-", socket.gethostname())[:64] or "localhost"


_boot: tuple[str, float] | None = None


def this_boot() -> tuple[str, float]:
    """(boot id, boot time in epoch seconds) of this machine: a new boot id means every
    process of an earlier boot is gone, whatever pids and start times say.

    Linux: /proc/sys/kernel/random/boot_id and /proc/stat's btime (read once). Elsewhere
    ("", 0.0): boots cannot be told apart.
    """
    global _boot
    if _boot is None:
        boot_id, btime = "", 0.0
        try:
            with open("/proc/sys/kernel/random/boot_id") as fh:
                boot_id = fh.read().strip()
            with open("/proc/stat") as fh:
                for line in fh:
                    if line.startswith("btime "):
                        btime = float(line.split()[1])
        except (OSError, ValueError):
            pass
        _boot = (boot_id, btime)
    return _boot


def process_start(pid: int) -> int | None:
    """A value that identifies one process among all that ever had this pid.

    On Linux: the start time in clock ticks since boot (/proc/PID/stat field 22).
    Elsewhere: psutil's create time in milliseconds, if psutil is importable.
    None when the process does not exist or is a zombie (it has finished).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _start_without_proc(pid)
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _start_without_proc(pid: int) -> int | None:
    try:
        import psutil  # optional outside Linux; the core stays stdlib-only
    except ImportError:
        return 0 if pid_exists(pid) else None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(proc.create_time() * 1000)
    except psutil.Error:
        return None


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Holder:
    agent: str
    host: str
    pid: int
    start: int
    claimed_ms: int

    @classmethod
    def current(cls, agent: str, pid: int | None = None) -> Holder:
        """The holder record for `pid` (default: this process) claiming now."""
        pid = os.getpid() if pid is None else pid
        return cls(check_agent_name(agent), this_host(), pid, process_start(pid) or 0,
                   int(time.time() * 1000))

    @property
    def claimed_at(self) -> float:
        return self.claimed_ms / 1000.0

    def file_name(self, task_id: str) -> str:
        return SEP.join((task_id, self.agent, self.host, str(self.pid), str(self.start),
                         str(self.claimed_ms))) + ".json"

    def as_entry(self) -> dict:
        """The fields recorded in the task's `active` history entry."""
        return {"claimed_by": self.agent, "pid": self.pid, "host": self.host,
                "pid_start": self.start}

    def is_alive(self) -> bool | None:
        """True/False for a holder on this host; None when it lives elsewhere."""
        if self.host != this_host() or self.pid == 0:
            return None  # elsewhere, or a person (pid 0): only an age limit reaps it
        booted = this_boot()[1]
        if booted and self.claimed_at < booted - 1.0:
            return False  # claimed before this machine booted: its process is gone
        if not pid_exists(self.pid):
            return False
        return process_start(self.pid) == self.start

    def is_process(self, pid: int, start: int, host: str | None = None) -> bool:
        """Whether this claim is held by that very process (pid, start time, host)."""
        return (self.pid == pid and self.start == start
                and self.host == (this_host() if host is None else host))


def parse_active_name(name: str) -> tuple[str, Holder | None] | None:
    """Split an active/ file name into (task id, holder).

    `<id>.json` (a claim made by 0.1.0) gives a None holder; names that are
    neither form give None.
    """
    if not name.endswith(".json"):
        return None
    stem = name[:-5]
    parts = stem.split(SEP)
    if len(parts) == 1:
        return stem, None
    if len(parts) != 6:
        return None
    task_id, agent, host, pid, start, claimed = parts
    try:
        return task_id, Holder(agent, host, int(pid), int(start), int(claimed))
    except ValueError:
        return None
