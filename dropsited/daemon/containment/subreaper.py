"""Make the daemon adopt its agents' orphans, and reap them without stealing statuses.

As a child subreaper (Linux >= 3.4), the daemon becomes the parent of any descendant
whose own parent exits, instead of PID 1. That keeps orphaned grandchildren visible to
``psutil.Process().children()`` (so they can be killed) and means the daemon must reap
them, or they stay zombies (some container PID 1s never reap).

Reaping must not use ``os.waitpid(-1, ...)``: that would also collect the exit status
of children that ``subprocess.Popen`` objects own, and ``Popen.poll()`` would then
report 0 for a process that really crashed. So ``reap_orphans`` only waits for pids
that no Popen owns. Call it from the thread that spawns agents, so a Popen just being
created cannot be missing from ``known_pids``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Collection

import psutil

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, arg: int | ctypes.c_int | ctypes._Pointer) -> int:  # type: ignore[type-arg]
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def become_subreaper() -> bool:
    """Mark this process a child subreaper; False where unsupported (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    """Whether this process is currently a child subreaper (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    flag = ctypes.c_int(0)
    try:
        ok = _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) == 0  # type: ignore[arg-type]
    except (OSError, AttributeError):
        return False
    return ok and flag.value != 0


def reap_orphans(known_pids: Collection[int]) -> list[tuple[int, int]]:
    """Reap exited children of ours that no Popen owns; return ``(pid, wait status)``.

    ``known_pids`` are the pids of the Popen objects the daemon holds; they are left
    for ``Popen.poll()``. Use ``os.waitstatus_to_exitcode`` on a status if needed.
    Never blocks.
    """
    reaped = []
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    for child in children:
        if child.pid in known_pids:
            continue
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if pid:
            reaped.append((pid, status))
    return reaped
