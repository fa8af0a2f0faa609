"""The agent registry: `agents/<name>.json`, one record per agent (0.1.0's keys first).

Records are advisory (never fsynced) snapshots; one writer (folders.write_record)
replaces them atomically, and every read is total: a record that is not a JSON
object is skipped, never raised.
"""

from __future__ import annotations

from typing import Any

from .folders import WorkspaceFolders
from .names import check_agent_name
from .task import utcnow_iso

FOLDER = "agents"


class AgentRegistry:
    def __init__(self, folders: WorkspaceFolders) -> None:
        self.folders = folders

    def register(self, name: str, role: str = "worker", **meta: Any) -> None:
        now = utcnow_iso()
        self.write(name, {"name": name, "role": role, "registered_at": now, "last_seen": now,
                          **meta})

    def heartbeat(self, name: str, **fields: Any) -> None:
        record = self.read(name)
        if record is None:
            return
        record.update(fields, last_seen=utcnow_iso())
        self.write(name, record)

    def read(self, name: str) -> dict | None:
        return self.folders.read_record(FOLDER, f"{check_agent_name(name)}.json")

    def write(self, name: str, record: dict) -> None:
        self.folders.write_json_record(FOLDER, f"{check_agent_name(name)}.json", record)

    def list(self) -> list[dict]:
        return sorted(self.folders.records(FOLDER), key=lambda r: str(r.get("name", "")))
