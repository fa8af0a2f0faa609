"""Control requests: how anyone (the CLI, a script in any language) asks a running daemon
to stop, start, restart or scale an agent, or to cancel a task (PROTOCOL.md §14).

A request is one small JSON file, `.dropsited/control/<id>.json`, written with the one
record writer (a temp file renamed into place, so the daemon never sees half of it). The
daemon answers with `<id>.reply.json` next to it and removes the request. Who asked is
the request file's owner (st_uid), never what the file says. This module is the format
and its total parser, the client's write and wait, and the daemon's read: no daemon code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import json_rules
from .errors import DropSiteError
from .folders import CONTROL_DIR, STATE_DIR, WorkspaceFolders
from .fs import GONE, OPEN_READ, StorageError
from .names import check_agent_name, check_task_id, is_valid_task_id, new_task_id
from .task import utcnow_iso

CONTROL = CONTROL_DIR
VERSION = 1
VERBS = ("stop", "start", "restart", "scale", "cancel")
AGENT_VERBS = ("stop", "start", "restart", "scale")
ALL = "all"
MAX_SCALE = 1000  # processes (or exec slots) one request may ask for
MAX_REQUEST_BYTES = 16 * 1024
REPLY_SUFFIX = ".reply.json"
_NAME_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.json\Z")
_FIELDS = {"dropsite_control", "id", "verb", "agent", "count", "task", "requeue", "user",
           "host", "created_at"}


class ControlError(DropSiteError):
    """A request that cannot be carried out as written: `code` says why, for scripts."""

    def __init__(self, message: str, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    """One parsed request; `agent` is a name or "all" (agent verbs), `task` an id (cancel)."""

    id: str
    verb: str
    agent: str | None = None
    count: int | None = None
    task: str | None = None
    requeue: bool = False
    host: str | None = None

    def to_record(self, user: str) -> dict:
        record: dict[str, Any] = {"dropsite_control": VERSION, "id": self.id, "verb": self.verb}
        if self.agent is not None:
            record["agent"] = self.agent
        if self.count is not None:
            record["count"] = self.count
        if self.task is not None:
            record["task"] = self.task
            record["requeue"] = self.requeue
        if self.host is not None:
            record["host"] = self.host
        return {**record, "user": user, "created_at": utcnow_iso()}

    def what(self) -> str:
        """The request in a few words, for logs and replies."""
        if self.verb == "cancel":
            return f"cancel {self.task}{' --requeue' if self.requeue else ''}"
        return f"{self.verb} {self.agent}" + (f" {self.count}" if self.verb == "scale" else "")


@dataclass(frozen=True)
class Requester:
    """Who asked: the uid owning the request file and its user name (the uid if unknown)."""

    uid: int
    user: str

    @classmethod
    def of_uid(cls, uid: int) -> Requester:
        try:
            return cls(uid, pwd.getpwuid(uid).pw_name)
        except (KeyError, OverflowError):
            return cls(uid, str(uid))

    def record(self) -> dict:
        return {"user": self.user, "uid": self.uid, "at": utcnow_iso()}


def request_file(request_id: str) -> str:
    return f"{request_id}.json"


def reply_file(request_id: str) -> str:
    return f"{request_id}{REPLY_SUFFIX}"


def request_id_of(name: str) -> str | None:
    """The id of a request file name; None for replies, temp files and anything else."""
    if name.endswith(REPLY_SUFFIX):
        return None
    match = _NAME_RE.match(name)
    return match.group(1) if match else None


# -- the total parser -------------------------------------------------------------------
def parse_request(raw: bytes, request_id: str) -> Request:
    """A request from the bytes of `<request_id>.json`, or ControlError naming the field."""
    try:
        data = json_rules.loads(raw)
    except DropSiteError as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(str(k)[:40] for k in data if k not in _FIELDS)
    if unknown:
        raise ControlError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(_FIELDS))})")
    if data.get("dropsite_control") != VERSION:
        raise ControlError(f"dropsite_control: expected {VERSION}, got "
                           f"{_shown(data.get('dropsite_control'))}")
    if data.get("id") != request_id:
        raise ControlError(f"id: expected {request_id!r} (the file's name), got "
                           f"{_shown(data.get('id'))}")
    verb = data.get("verb")
    if verb not in VERBS:
        raise ControlError(f"verb: expected one of {', '.join(VERBS)}, got {_shown(verb)}")
    host = _optional_text(data, "host")
    if verb == "cancel":
        return _parse_cancel(data, request_id, host)
    return Request(request_id, verb, agent=_agent(data), count=_count(data, verb), host=host)


def _parse_cancel(data: dict, request_id: str, host: str | None) -> Request:
    for key in ("agent", "count"):
        if key in data:
            raise ControlError(f"{key}: not a field of cancel")
    task = data.get("task")
    if not is_valid_task_id(task):
        raise ControlError(f"task: expected a task id, got {_shown(task)} (a task id is a "
                           "name, never a path)", "bad_task")
    requeue = data.get("requeue", False)
    if not isinstance(requeue, bool):
        raise ControlError(f"requeue: expected true or false, got {_shown(requeue)}")
    return Request(request_id, "cancel", task=task, requeue=requeue, host=host)


def _agent(data: dict) -> str:
    agent = data.get("agent")
    if agent == ALL:
        return ALL
    try:
        return check_agent_name(agent)
    except DropSiteError as exc:
        raise ControlError(f"agent: {exc}", "unknown_agent") from None


def _count(data: dict, verb: str) -> int | None:
    if verb != "scale":
        if "count" in data:
            raise ControlError(f"count: only scale takes a count, not {verb}")
        return None
    count = data.get("count")
    if type(count) is not int or not 1 <= count <= MAX_SCALE:
        raise ControlError(f"count: expected an integer from 1 to {MAX_SCALE}, got "
                           f"{_shown(count)}", "bad_count")
    return count


def _optional_text(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
        raise ControlError(f"{key}: expected a short string, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = json_rules.dumps(value, indent=None).decode() if _plain(value) else type(value).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# -- the daemon's side --------------------------------------------------------------------
def read_request(folders: WorkspaceFolders, name: str) -> tuple[bytes, int] | None:
    """(bytes, owner uid) of a request file, read from one descriptor opened without
    following links; None when it is gone. ControlError for a link, a non-file or an
    oversized file: the daemon answers those with an error reply."""
    try:
        fd = os.open(name, OPEN_READ, dir_fd=folders.fd(CONTROL))
    except OSError as exc:
        if exc.errno in GONE:
            return None
        if exc.errno == errno.ELOOP:
            raise ControlError("is a symbolic link (never followed)") from None
        raise ControlError(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ControlError("is not a regular file")
        if info.st_size > MAX_REQUEST_BYTES:
            raise ControlError(f"is {info.st_size} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
        raw = os.read(fd, MAX_REQUEST_BYTES + 1)
        if len(raw) > MAX_REQUEST_BYTES:
            raise ControlError(f"grew past the {MAX_REQUEST_BYTES}-byte limit while read")
        return raw, info.st_uid
    finally:
        os.close(fd)


def owner_of(folders: WorkspaceFolders, name: str) -> int | None:
    """The uid owning a control file (for a request too broken to read), None if gone."""
    info = folders.lstat(CONTROL, name)
    return None if info is None else info.st_uid


def write_reply(folders: WorkspaceFolders, request_id: str, reply: dict) -> None:
    folders.write_json_record(CONTROL, reply_file(request_id), reply)


def remove(folders: WorkspaceFolders, name: str) -> bool:
    """Unlink a control file; False when it was already gone."""
    try:
        os.unlink(name, dir_fd=folders.fd(CONTROL))
    except FileNotFoundError:
        return False
    return True


# -- the client's side ----------------------------------------------------------------------
def new_request(verb: str, *, agent: str | None = None, count: int | None = None,
                task: str | None = None, requeue: bool = False,
                host: str | None = None) -> Request:
    """A request checked as the daemon will check it (ControlError otherwise)."""
    if verb == "cancel":
        check_task_id(task)
    elif agent != ALL:
        check_agent_name(agent)
    request = Request(new_task_id(), verb, agent=agent, count=count, task=task,
                      requeue=requeue, host=host)
    user = Requester.of_uid(os.geteuid()).user
    parse_request(json_rules.dumps(request.to_record(user)), request.id)
    return request


def send(folders: WorkspaceFolders, request: Request) -> None:
    """Drop the request; StorageError with a clear reason when this user may not."""
    user = Requester.of_uid(os.geteuid())
    try:
        folders.make_folder(STATE_DIR)
        folders.make_folder(CONTROL)
        folders.write_json_record(CONTROL, request_file(request.id), request.to_record(user.user))
    except (StorageError, OSError) as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StorageError(f"{folders.path(CONTROL)}: this user ({user.user}, uid {user.uid}) "
                               "cannot write the workspace's control folder; control "
                               "requests need write access to the workspace", code) from None
        raise


def await_reply(folders: WorkspaceFolders, request_id: str, timeout: float,
                alive: Callable[[], bool], interval: float = 0.01) -> dict | None:
    """The daemon's reply (removed once read), or None at the deadline. ControlError
    ("no_daemon") as soon as `alive()` says the daemon is gone."""
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.5
    while True:
        reply = folders.read_record(CONTROL, reply_file(request_id))
        if reply is not None:
            with contextlib.suppress(OSError, DropSiteError):
                remove(folders, reply_file(request_id))
            return reply
        now = time.monotonic()
        if now >= deadline:
            return None
        if now >= next_check:
            next_check = now + 0.5
            if not alive():
                raise ControlError("the daemon stopped before it answered", "no_daemon")
        time.sleep(min(interval, max(0.0, deadline - now)))


def withdraw(folders: WorkspaceFolders, request_id: str) -> bool:
    """Take back a request nobody answered: True if it was still waiting (so the daemon
    will never act on it), False if the daemon had already taken it."""
    try:
        return remove(folders, request_file(request_id))
    except (OSError, DropSiteError):
        return False
