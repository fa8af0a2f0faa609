"""The schedules' memory: `.dropsited/schedules.json`, one entry per schedule.

Written with the one atomic record writer (folders.py) after every decision, read
totally. What it protects against is a restart dropping twice for one slot; the task
id of a slot is also deterministic (`slot_task_id`) and store.create refuses an id any
folder holds, so even a crash between the drop and this write cannot drop twice.

A file that cannot be read or parsed is logged and treated as "no last run": each
schedule then waits for its next slot. Of the two possible failures (a catch-up run
lost, or a run dropped twice), losing one catch-up run is the lesser: a duplicate
report or payment is worse than a late one, and the log says which run was skipped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ...protocol import json_rules
from ...protocol.errors import DropSiteError, InvalidTask
from ...protocol.folders import MAX_RECORD_BYTES, STATE_DIR, WorkspaceFolders

STATE_FILE = "schedules.json"
VERSION = 1
MAX_SLOT = 1e11  # year ~5138: beyond it a number is garbage, not a time


@dataclass
class Entry:
    """What is remembered of one schedule: the last slot acted on (or, before any, the
    moment the schedule was first seen), what was done, and the task dropped last."""

    last: float | None = None  # last slot consumed, or first-seen time; None: unknown
    action: str = ""  # "dropped", "skipped" (previous run still going), "seen"
    task_id: str | None = None  # the last task dropped
    task_slot: float | None = None  # its slot
    next_slot: float | None = None  # published for `dropsited schedules`
    describe: str = ""  # "cron 0 6 * * * (Europe/Berlin)" / "every 10s"

    def to_json(self) -> dict[str, Any]:
        return {"last": self.last, "last_at": iso(self.last), "action": self.action,
                "task_id": self.task_id, "task_slot": self.task_slot,
                "task_slot_at": iso(self.task_slot), "next_slot": self.next_slot,
                "next_at": iso(self.next_slot), "describe": self.describe}


def iso(moment: float | None) -> str | None:
    """An instant as ISO 8601 UTC, for people reading the file."""
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat()


def slot_task_id(schedule: str, slot: float) -> str:
    """The id of the task a schedule drops for a slot: the same for the same (schedule,
    slot), on every host and after any restart, and shaped like names.new_task_id (12
    hex digits of milliseconds, then 20 more), so ids still sort by time."""
    ms = int(round(slot * 1000))
    digest = hashlib.sha256(f"{schedule}\x00{ms}".encode()).hexdigest()
    return f"{ms:012x}5c{digest[:18]}"


def _time(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= MAX_SLOT else None


def _text(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def parse_entry(raw: Any) -> Entry | None:
    """One schedule's entry, or None if it is not an object; unusable fields are dropped."""
    if not isinstance(raw, dict):
        return None
    task_id = _text(raw.get("task_id"), 64)
    return Entry(last=_time(raw.get("last")), action=_text(raw.get("action"), 20) or "",
                 task_id=task_id, task_slot=_time(raw.get("task_slot")),
                 next_slot=_time(raw.get("next_slot")), describe=_text(raw.get("describe")) or "")


def load(store: WorkspaceFolders) -> tuple[dict[str, Entry], str | None]:
    """Every schedule's entry, and a one-line problem when the file exists but is unusable
    (then the entries are empty: "no last run")."""
    try:
        data = store.read(STATE_DIR, STATE_FILE, MAX_RECORD_BYTES)
    except FileNotFoundError:
        return {}, None
    except (OSError, DropSiteError) as exc:
        return {}, f"{store.path(STATE_DIR, STATE_FILE)}: cannot read: {exc}"
    try:
        doc = json_rules.loads(data)
    except (InvalidTask, ValueError, RecursionError) as exc:
        return {}, f"{store.path(STATE_DIR, STATE_FILE)}: not JSON ({exc})"
    if not isinstance(doc, dict) or not isinstance(doc.get("schedules"), dict):
        return {}, f"{store.path(STATE_DIR, STATE_FILE)}: expected an object with 'schedules'"
    entries = {}
    for name, raw in doc["schedules"].items():
        entry = parse_entry(raw)
        if isinstance(name, str) and entry is not None:
            entries[name] = entry
    return entries, None


def save(store: WorkspaceFolders, entries: dict[str, Entry]) -> None:
    """Replace the file atomically (a reader sees the old or the new one, whole)."""
    store.make_folder(STATE_DIR)
    doc = {"version": VERSION, "schedules": {n: e.to_json() for n, e in sorted(entries.items())}}
    store.write_json_record(STATE_DIR, STATE_FILE, doc)
