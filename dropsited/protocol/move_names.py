"""The names a move gives its files in flight, and whether their writer can still finish.

A move writes `.<id>~<host>~<pid>~<start>.tmp` (its new content) and, on a network
file system, renames its source to `.<id>~<host>~<pid>~<start>.old` (the commit
point); see store.py. Recovery and the inbox index read these names back, so they
are built and parsed here, once.
"""

from __future__ import annotations

import os

from .fs import ON_LINUX
from .holder import SEP, process_start, this_host

# A move keeps its temp file for milliseconds. One older than this is abandoned
# whatever its name claims (a forged `.x~host~1~0.tmp` names pid 1, which is alive).
TEMP_MAX_AGE = 3600.0

_temp_tag: tuple[int, str] | None = None


def my_temp_tag() -> str:
    """host~pid~start of this process, read from /proc once per process (not per move)."""
    global _temp_tag
    pid = os.getpid()
    if _temp_tag is None or _temp_tag[0] != pid:  # first call, or a forked child
        _temp_tag = (pid, SEP.join((this_host(), str(pid), str(process_start(pid) or 0))))
    return _temp_tag[1]


def temp_name(task_id: str) -> str:
    return f".{task_id}{SEP}{my_temp_tag()}.tmp"


def parse_temp_name(name: str) -> tuple[str, str, int, int] | None:
    """(task id, host, pid, start) of one of our temp files, else None."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:-4].split(SEP)
    if len(parts) != 4:
        return None
    try:
        return parts[0], parts[1], int(parts[2]), int(parts[3])
    except ValueError:
        return None


def tombstone_name(task_id: str) -> str:
    return f".{task_id}{SEP}{my_temp_tag()}.old"


def parse_tombstone(name: str) -> tuple[str, str, int, int] | None:
    """(task id, host, pid, start) of a move's committed source, else None."""
    return parse_temp_name(name[:-4] + ".tmp") if name.endswith(".old") else None


def is_move_file(name: str) -> bool:
    """A temp file or a tombstone: a move in progress, owned by recovery, never quarantined."""
    return parse_temp_name(name) is not None or parse_tombstone(name) is not None


def writer_alive(pid: int, start: int) -> bool:
    """Whether the process that named itself in a temp file is still that process.

    On Linux every real writer records its start time: a 0 there is a forged name."""
    if pid <= 0:
        return False
    current = process_start(pid)
    if current is None:
        return False
    if start == 0:
        return not ON_LINUX
    return current == start


def abandoned(name: str, mtime: float, now: float) -> bool:
    """Whether a temp file's writer can no longer finish it.

    A writer on this host is asked (dead, or its pid now names another process);
    any temp file older than TEMP_MAX_AGE is abandoned whatever its name says, so a
    forged name (pid 1, another host's) cannot keep a file for ever.
    """
    parsed = parse_temp_name(name) or parse_tombstone(name)
    if parsed is None:
        return False
    _task_id, host, pid, start = parsed
    if now - mtime >= TEMP_MAX_AGE:
        return True
    return host == this_host() and not writer_alive(pid, start)
