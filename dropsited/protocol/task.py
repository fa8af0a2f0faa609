"""The task document: fields, validation and history. No I/O happens here.

The field set and JSON layout are DropSite 0.1.0's, so either implementation
reads what the other writes. Keys this module does not know are kept in
`extra` and written back, instead of being dropped as 0.1.0 does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import json_rules
from .errors import InvalidName, InvalidTask
from .names import check_agent_name, check_task_id, new_task_id

FIELDS = (
    "id", "title", "created_by", "status", "description", "assigned_to", "priority",
    "context", "result", "tags", "parent_id", "retry_count", "max_retries",
    "created_at", "updated_at", "history",
)


def utcnow_iso(at: float | None = None) -> str:
    """The timestamp form 0.1.0 writes: `datetime.now(timezone.utc).isoformat()`."""
    if at is None:
        return datetime.now(timezone.utc).isoformat()
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


def parse_iso(value: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 string, None when it does not parse."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass
class Task:
    """One unit of work; the in-memory form of one JSON file."""

    id: str
    title: str
    created_by: str
    status: str = "pending"
    description: str = ""
    assigned_to: str | None = None
    priority: int = 5
    context: dict = field(default_factory=dict)
    result: dict | None = None
    tags: list = field(default_factory=list)
    parent_id: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    created_at: str = ""
    updated_at: str = ""
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict, repr=False, compare=False)
    # Set while the task is held: who holds it (a protocol.holder.Holder) and
    # the assignment it had before the claim, restored if it goes back to inbox/.
    holder: Any = field(default=None, repr=False, compare=False)
    assigned_before_claim: str | None = field(default=None, repr=False, compare=False)
    # Seconds after submission before it may be handed out (TaskBuilder.delay).
    submit_delay: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.created_at or not self.updated_at:  # not on every load: it is hot
            now = utcnow_iso()
            if not self.created_at:
                self.created_at = now
            if not self.updated_at:
                self.updated_at = now

    # -- history -----------------------------------------------------------
    def log(self, status: str, at: str | None = None, **extra: Any) -> dict:
        """Append a history entry and keep `status` equal to its status, as 0.1.0 does."""
        entry = {"status": status, "at": at or utcnow_iso(), **extra}
        self.history.append(entry)
        self.status = status
        self.updated_at = entry["at"]
        return entry

    @property
    def not_before(self) -> float | None:
        """Epoch seconds before which the task must not be handed out, if any.

        Kept in the last history entry (key `not_before`) because 0.1.0 drops
        unknown top-level keys but keeps history intact.
        """
        if not self.history:
            return None
        value = self.history[-1].get("not_before") if isinstance(self.history[-1], dict) else None
        return parse_iso(value) if isinstance(value, str) else None

    @property
    def depends_on(self) -> list[str]:
        deps = self.context.get("_depends_on") if isinstance(self.context, dict) else None
        return [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []

    # -- (de)serialisation --------------------------------------------------
    def to_dict(self) -> dict:
        data = {name: getattr(self, name) for name in FIELDS}
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    def to_json(self, indent: int | None = 2) -> bytes:
        """The file format (indented, for cat and editors); `indent=None` is one line,
        which json encodes in C, several times faster: what the daemon pipes to agents.

        Refuses (InvalidTask) what a reader would refuse: json_rules.py."""
        return json_rules.dumps(self.to_dict(), indent)

    @classmethod
    def from_dict(cls, data: Any, default_id: str | None = None) -> Task:
        """Validate a decoded document; InvalidTask names the first bad field."""
        if not isinstance(data, dict):
            raise InvalidTask(f"task must be a JSON object, got {_kind(data)}")
        values = {k: data[k] for k in FIELDS if k in data}
        if "id" not in values:
            if default_id is None:
                raise InvalidTask("id: missing")
            values["id"] = default_id
        for key, value in values.items():
            # Most fields hold exactly the expected type: one type() lookup
            # instead of the full check (loading is on the claim path).
            if type(value) is not _PLAIN.get(key):
                _CHECKS[key](key, value)
        _check_dependencies(values.get("context"))
        values.setdefault("title", values["id"])
        values.setdefault("created_by", "unknown")
        extra = {k: v for k, v in data.items() if k not in FIELDS}
        return cls(**values, extra=extra)

    @classmethod
    def from_json(cls, raw: bytes, default_id: str | None = None) -> Task:
        """Parse a task file: a Task, or InvalidTask naming the problem (nothing else)."""
        return cls.from_dict(json_rules.loads(raw), default_id=default_id)

    def copy(self) -> Task:
        clone = Task.from_dict(json.loads(self.to_json()))
        clone.holder = self.holder
        clone.assigned_before_claim = self.assigned_before_claim
        return clone


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "integer", float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _want(types: tuple, label: str):
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) and bool not in types:
            raise InvalidTask(f"{key}: expected {label}, got boolean")
        if not isinstance(value, types):
            raise InvalidTask(f"{key}: expected {label}, got {_kind(value)}")
    return check


def _check_id(key: str, value: Any) -> None:
    _want((str,), "string")(key, value)
    try:
        check_task_id(value)
    except InvalidName as exc:
        raise InvalidTask(f"{key}: {exc}") from None


def _check_count(key: str, value: Any) -> None:
    _want((int,), "integer")(key, value)
    if value < 0:
        raise InvalidTask(f"{key}: must not be negative, got {value}")


def _check_str_list(key: str, value: Any) -> None:
    _want((list,), "array of strings")(key, value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidTask(f"{key}[{i}]: expected string, got {_kind(item)}")


def _check_history(key: str, value: Any) -> None:
    _want((list,), "array of objects")(key, value)
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidTask(f"{key}[{i}]: expected object, got {_kind(entry)}")
        if not isinstance(entry.get("status"), str):
            raise InvalidTask(f"{key}[{i}].status: expected string, got {_kind(entry.get('status'))}")


def _check_optional_id(key: str, value: Any) -> None:
    if value is not None:
        _check_id(key, value)


def _check_dependencies(context: Any) -> None:
    """`context._depends_on` names files in done/ and failed/: ids only, never paths."""
    if not isinstance(context, dict) or "_depends_on" not in context:
        return
    deps = context["_depends_on"]
    if not isinstance(deps, list):
        raise InvalidTask(f"context._depends_on: expected array of task ids, got {_kind(deps)}")
    for i, dep in enumerate(deps):
        _check_id(f"context._depends_on[{i}]", dep)


def _check_optional_str(key: str, value: Any) -> None:
    if value is not None:
        _want((str,), "string or null")(key, value)


_CHECKS = {
    "id": _check_id,
    "title": _want((str,), "string"),
    "created_by": _want((str,), "string"),
    "status": _want((str,), "string"),
    "description": _want((str,), "string"),
    "assigned_to": _check_optional_str,
    "priority": _want((int,), "integer"),
    "context": _want((dict,), "object"),
    "result": lambda k, v: v is None or _want((dict,), "object or null")(k, v),
    "tags": _check_str_list,
    "parent_id": _check_optional_id,
    "retry_count": _check_count,
    "max_retries": _check_count,
    "created_at": _want((str,), "string"),
    "updated_at": _want((str,), "string"),
    "history": _check_history,
}


# Fields whose check passes whenever the value is of exactly this type.
_PLAIN = {"title": str, "created_by": str, "status": str, "description": str,
          "priority": int, "context": dict, "created_at": str, "updated_at": str}


class TaskBuilder:
    """Fluent construction, as on the reference page, plus `delay` and `depends_on`."""

    def __init__(self, title: str, created_by: str) -> None:
        self._data: dict[str, Any] = {"id": new_task_id(), "title": title, "created_by": created_by}
        self._delay: float = 0.0

    def describe(self, desc: str) -> TaskBuilder:
        self._data["description"] = desc
        return self

    def assign(self, agent: str) -> TaskBuilder:
        self._data["assigned_to"] = check_agent_name(agent)
        return self

    def priority(self, p: int) -> TaskBuilder:
        self._data["priority"] = p
        return self

    def context(self, ctx: dict) -> TaskBuilder:
        self._data["context"] = ctx
        return self

    def tag(self, *tags: str) -> TaskBuilder:
        self._data.setdefault("tags", []).extend(tags)
        return self

    def parent(self, parent_id: str) -> TaskBuilder:
        self._data["parent_id"] = check_task_id(parent_id)
        return self

    def max_retries(self, n: int) -> TaskBuilder:
        self._data["max_retries"] = n
        return self

    def delay(self, seconds: float) -> TaskBuilder:
        """Not handed out until `seconds` after submission."""
        seconds = float(seconds)
        if not 0 <= seconds <= 10 * 365 * 86400:  # also refuses NaN and infinity
            raise InvalidTask(f"delay: expected seconds between 0 and ten years, got {seconds}")
        self._delay = seconds
        return self

    def depends_on(self, *task_ids: str) -> TaskBuilder:
        """Not handed out until every listed task is in done/."""
        ctx = dict(self._data.get("context") or {})
        deps = list(ctx.get("_depends_on") or [])
        deps.extend(check_task_id(t) for t in task_ids)
        ctx["_depends_on"] = deps
        self._data["context"] = ctx
        return self

    def with_id(self, task_id: str) -> TaskBuilder:
        self._data["id"] = check_task_id(task_id)
        return self

    def build(self) -> Task:
        task = Task.from_dict(dict(self._data))
        task.log("pending")
        task.submit_delay = self._delay
        return task
