"""Finding and stopping every process that belongs to an agent, including escapees.

Signalling the process group is not enough (supervisor #1101, pm2 #6084): a grandchild
may call ``setsid()`` to leave the group, and once the direct child has exited its
children are re-parented away, so ``children(recursive=True)`` of the leader no longer
sees them. Two marks survive both: the environment (inherited through fork and exec
unless a program clears it on purpose) and the group/session id. This module scans
``/proc`` (through psutil) for either mark.

It also recovers after the daemon itself was SIGKILLed: every agent carries
``DROPSITED_DAEMON=<workspace>:<daemon pid>:<daemon start time>``, so the next daemon
finds agents whose daemon is dead and stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from .death_watch import MARKER_ENV  # names the daemon (and workspace) that spawned an agent

CHILD_TAG_ENV = "DROPSITED_CHILD"  # unique per spawned agent; inherited by its whole tree


def is_alive(proc: psutil.Process) -> bool:
    """True for a live process; a zombie is dead (it only waits for its reaper)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Live descendants of ``proc``; empty if it is gone."""
    try:
        return [p for p in proc.children(recursive=True) if is_alive(p)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _env_of(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
        return {}


def _in_group_or_session(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid or os.getsid(pid) == pgid
    except OSError:
        return False


def tree_members(pgid: int | None = None, tag: str | None = None) -> list[psutil.Process]:
    """Live processes in group/session ``pgid`` or whose env has ``CHILD_TAG_ENV=tag``.

    Our own process is never included, so a mistake cannot make the daemon kill itself.
    Costs one pass over ``/proc``: call it when stopping, not on every loop tick.
    """
    me = os.getpid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == me or not is_alive(proc):
            continue
        in_group = pgid is not None and _in_group_or_session(proc.pid, pgid)
        if in_group or (tag is not None and _env_of(proc).get(CHILD_TAG_ENV) == tag):
            found.append(proc)
    return found


def signal_all(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    """Send ``sig`` to each process still alive; return the pids signalled.

    psutil refuses to signal a pid that was reused by another process, which makes a
    stale ``psutil.Process`` safe to keep around.
    """
    sent = []
    for proc in procs:
        try:
            proc.send_signal(sig)
            sent.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sent


def signal_group(pgid: int, sig: int) -> bool:
    """``killpg`` that refuses our own group; False when the group is gone."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process is dead or a zombie; return those still alive.

    Not ``psutil.wait_procs``: for processes that are not our children it waits for
    the pid to vanish, and a zombie whose parent never reaps (PID 1 in some
    containers) would keep it waiting the whole timeout.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if is_alive(p)]
    return alive


def terminate(procs: list[psutil.Process], sig: int, grace: float) -> list[int]:
    """Send ``sig`` to each process and their groups, wait ``grace``, SIGKILL the rest.

    Returns the pids that had to be SIGKILLed. A zombie counts as gone.
    """
    groups = set()
    for proc in procs:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    for pgid in groups:
        signal_group(pgid, sig)
    signal_all(procs, sig)
    alive = wait_gone(procs, grace)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
    return signal_all(alive, signal.SIGKILL)


@dataclass(frozen=True)
class DaemonMarker:
    """Who spawned an agent: the workspace and the daemon's pid and start time."""

    workspace: str
    pid: int
    start: float

    def format(self) -> str:
        return f"{self.workspace}:{self.pid}:{self.start:.2f}"

    @classmethod
    def parse(cls, value: str) -> DaemonMarker | None:
        """Parse ``format()``'s output; None for anything else. The path may hold ':'."""
        try:
            workspace, pid, start = value.rsplit(":", 2)
            return cls(workspace, int(pid), float(start))
        except ValueError:
            return None

    @classmethod
    def for_current_process(cls, workspace: str | os.PathLike[str]) -> DaemonMarker:
        """The marker the running daemon puts into every agent's environment."""
        me = psutil.Process()
        return cls(str(Path(workspace).resolve()), me.pid, me.create_time())

    def daemon_alive(self) -> bool:
        """True if the daemon that wrote this marker still runs (pid and start match)."""
        try:
            proc = psutil.Process(self.pid)
            return is_alive(proc) and abs(proc.create_time() - self.start) < 0.02
        except psutil.NoSuchProcess:
            return False


def find_orphans_from_previous_run(
    workspace: str | os.PathLike[str], env_name: str = MARKER_ENV
) -> list[psutil.Process]:
    """Live processes spawned for ``workspace`` by a daemon that is now dead.

    Processes of other users that we may not read are skipped (AccessDenied), as are
    processes of a daemon that still runs: a second live daemon on one workspace is for
    the workspace lock to refuse, not for us to kill.
    """
    root = str(Path(workspace).resolve())
    orphans = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid() or not is_alive(proc):
            continue
        marker = DaemonMarker.parse(_env_of(proc).get(env_name, ""))
        if marker and marker.workspace == root and not marker.daemon_alive():
            orphans.append(proc)
    return orphans


def stop_orphans_from_previous_run(
    workspace: str | os.PathLike[str],
    sig: int = signal.SIGTERM,
    grace: float = 5.0,
    env_name: str = MARKER_ENV,
) -> list[int]:
    """Stop what ``find_orphans_from_previous_run`` finds: group signal, grace, SIGKILL.

    Returns the pids found. Call it at daemon start, before spawning anything.
    """
    orphans = find_orphans_from_previous_run(workspace, env_name)
    if orphans:
        terminate(orphans, sig, grace)
    return [p.pid for p in orphans]
