"""Task ids and agent names: how they are made and which ones are refused.

Both end up inside file names, so anything that could climb out of a folder
(`/`, `..`), confuse the holder encoding (`~`) or break a file system (NUL,
very long names) is refused here, in one place, for the API and the CLI alike.
"""

from __future__ import annotations

import os
import re
import threading
import time

from .errors import InvalidName

MAX_ID_LEN = 64
MAX_AGENT_LEN = 64

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
AGENT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@+-]*"  # and no "..", at most MAX_AGENT_LEN
_AGENT_RE = re.compile(AGENT_NAME_PATTERN + r"\Z")

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_task_id() -> str:
    """32 lowercase hex digits that sort by creation time (a UUIDv7-like layout).

    The first 12 digits are milliseconds since the epoch, the next 4 a counter
    that keeps ids made in the same millisecond in order, the last 16 random.
    Sorting ids therefore sorts by creation, which 0.1.0's uuid4 ids could not.
    """
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _seq += 1
            if _seq > 0xFFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms, _seq = ms, 0
        seq = _seq
    return f"{ms:012x}{seq:04x}{os.urandom(8).hex()}"


def _check(kind: str, value: object, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidName(f"{kind} is empty")
    if "\x00" in value:
        raise InvalidName(f"{kind} {value[:80]!r} contains a NUL byte")
    if "/" in value or "\\" in value or ".." in value:
        raise InvalidName(f"{kind} {value[:80]!r} looks like a path ('/', '\\' or '..' are not allowed)")
    if len(value) > limit:
        raise InvalidName(f"{kind} is {len(value)} characters long (at most {limit})")
    if not pattern.match(value):
        raise InvalidName(
            f"{kind} {value[:80]!r} has characters outside letters, digits and {_allowed(pattern)}"
        )
    return value


def _allowed(pattern: re.Pattern[str]) -> str:
    return "'_-'" if pattern is _ID_RE else "'_.@+-'"


def check_task_id(task_id: object) -> str:
    """Return the id unchanged, or raise InvalidName saying what is wrong with it."""
    return _check("task id", task_id, _ID_RE, MAX_ID_LEN)


def check_agent_name(name: object) -> str:
    """Return the name unchanged, or raise InvalidName saying what is wrong with it."""
    return _check("agent name", name, _AGENT_RE, MAX_AGENT_LEN)


def is_valid_task_id(task_id: object) -> bool:
    try:
        check_task_id(task_id)
    except InvalidName:
        return False
    return True
