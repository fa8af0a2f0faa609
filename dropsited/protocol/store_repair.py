"""TaskStore's repairs: quarantine of bad entries, late results, recovery of dead moves.

A mixin of TaskStore (store.py), kept apart because it is what a reader looks for
after a crash or a hostile file, not on the path of a normal move. It uses the
store's own primitives (`rename_noreplace`, `locate`, the folder fds), so store.py
and this module together are still the one place that moves task files.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from . import json_rules
from .errors import DropSiteError, InvalidTask
from .folders import QUARANTINE, TASK_FOLDERS
from .fs import BadFile, StorageError, is_gone, unlink_quietly, write_file
from .holder import SEP, this_host
from .move_names import abandoned, parse_temp_name, parse_tombstone
from .names import is_valid_task_id
from .task import Task, utcnow_iso

LATE_RESULTS = "late-results.jsonl"


class StoreRepair:
    """Quarantine, late results and recovery, for TaskStore (see the module docstring)."""

    on_quarantine: Callable[[dict], None] | None  # set by TaskStore.__init__

    # -- quarantine and late results --------------------------------------------
    def quarantine(self, folder: str, name: str, reason: str) -> Path | None:
        """Move a bad entry (never following links) to quarantine/ beside a `.reason` file."""
        try:
            self.make_folder(QUARANTINE)
            qfd, src_fd = self.fd(QUARANTINE), self.fd(folder)
        except (OSError, DropSiteError):
            return None  # quarantine/ is a link or unwritable: the entry stays where it is
        kept = name.lstrip(".") or "unnamed"
        if kept.endswith(".reason"):  # a payload must never pass for a record
            kept += ".file"
        try:
            info = os.lstat(name, dir_fd=src_fd)
        except OSError as exc:
            if is_gone(exc):
                return None
            raise
        for attempt in range(3):
            dest = kept if attempt == 0 else f"{int(time.time() * 1000)}-{os.getpid()}-{kept}"
            if self.exists(QUARANTINE, dest) or self.exists(QUARANTINE, dest + ".reason"):
                continue
            try:
                self.rename_noreplace(name, dest, src_fd, qfd, shared=True)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                if is_gone(exc):
                    return None
                raise
        else:
            return None
        record = {"file": f"{folder}/{name}", "quarantined_as": dest, "error": reason,
                  "size": info.st_size, "at": utcnow_iso()}
        # The file itself is safe in quarantine/; its reason is best effort.
        with contextlib.suppress(StorageError, InvalidTask):
            write_file(dest + ".reason", json_rules.dumps(record) + b"\n", self.durable, dir_fd=qfd)
        if self.on_quarantine is not None:
            self.on_quarantine(record)
        return self.path(QUARANTINE, dest)

    def quarantined(self) -> list[dict]:
        """The quarantine records, each parsed totally: one that is not a JSON object of
        the expected fields is listed as unreadable, never trusted, never raised."""
        records = []
        for entry in self.entries(QUARANTINE):
            if not entry.name.endswith(".reason") or entry.name.startswith("."):
                continue
            data = self.read_record(QUARANTINE, entry.name) or {}
            record = {"quarantined_as": entry.name[:-7], "file": None,
                      "error": "reason unreadable", "size": None, "at": ""}
            for key in ("file", "error", "at"):
                if isinstance(data.get(key), str):
                    record[key] = data[key]
            if type(data.get("size")) is int:
                record["size"] = data["size"]
            records.append(record)
        return sorted(records, key=lambda r: r["at"])

    def log_late_result(self, record: dict) -> None:
        """Append one JSON line for a result that arrived after its claim was lost."""
        try:
            line = json_rules.dumps(record, indent=None)
        except InvalidTask as exc:
            kept = {k: record.get(k) for k in ("task_id", "at", "outcome", "agent")}
            line = json_rules.dumps({**kept, "result_unstorable": str(exc)}, indent=None)
        # One file per host on a shared file system: O_APPEND is not atomic across clients.
        name = f"late-results@{this_host()}.jsonl" if self.shared else LATE_RESULTS
        self.append_line(name, line + b"\n", self.durable)

    # -- recovery -----------------------------------------------------------
    def abandoned_temp(self, name: str, mtime: float, now: float) -> bool:
        return abandoned(name, mtime, now)

    def recover_temp_files(self, min_age: float = 0.0,
                           folders: tuple[str, ...] = TASK_FOLDERS) -> list[str]:
        """Finish or discard the temp files of writers that died mid-move.

        A dead writer's temp file whose task exists nowhere else was committed
        (step 2 happened): promote it. Otherwise it was never committed: remove it.
        Returns a line per action, for logs.
        """
        now, actions = time.time(), []
        for parse, recover in ((parse_temp_name, self._recover_one),
                               (parse_tombstone, self._recover_tombstone)):
            for folder in folders:
                for name in [e.name for e in self.entries(folder) if parse(e.name)]:
                    info = self.lstat(folder, name)
                    if info is None:
                        continue
                    if now - info.st_mtime >= min_age and \
                            self.abandoned_temp(name, info.st_mtime, now):
                        action = recover(folder, name, parse(name)[0])
                        if action:
                            actions.append(action)
        return actions

    def _recover_tombstone(self, folder: str, name: str, task_id: str) -> str | None:
        """A committed source whose writer died: the move finished, or is finished by
        its temp file (recovered first), or, with neither, the source comes back."""
        fd = self.fd(folder)
        if self.locate(task_id) is not None:
            unlink_quietly(name, fd)
            return f"removed the committed source of a finished move {folder}/{name}"
        if self._temp_of(task_id):
            return None  # its temp file is not recovered yet: the move may still finish
        try:
            self.rename_noreplace(name, f"{task_id}.json", fd, fd, shared=True)
        except OSError:
            return None
        return f"put back {task_id} into {folder}/ (its move never reached its destination)"

    def _recover_one(self, folder: str, name: str, task_id: str) -> str | None:
        fd = self.fd(folder)
        if not is_valid_task_id(task_id):
            self.quarantine(folder, name, "a temp file whose name holds no task id")
            return f"quarantined temp file {folder}/{name} (no task id in its name)"
        if self.locate(task_id) is not None:
            unlink_quietly(name, fd)
            return f"removed uncommitted temp file {folder}/{name}"
        if (problem := self._temp_problem(folder, name, task_id)) is not None:
            # A submit killed mid-write leaves a partial temp file and no
            # other copy: promoting it would put a corrupt file in inbox/.
            self.quarantine(folder, name, f"unfinished write of {task_id}: {problem}")
            return f"quarantined unreadable temp file {folder}/{name}"
        try:
            self.rename_noreplace(name, f"{task_id}.json", fd, fd, shared=True)
        except OSError:
            return None
        return f"completed interrupted move of {task_id} into {folder}/"

    def _temp_of(self, task_id: str) -> bool:
        prefix = f".{task_id}{SEP}"
        return any(e.name.startswith(prefix) and parse_temp_name(e.name)
                   for folder in TASK_FOLDERS for e in self.entries(folder))

    def _temp_problem(self, folder: str, name: str, task_id: str) -> str | None:
        """Why a temp file is not a complete task with this id, or None if it is."""
        try:
            task = Task.from_json(self.read(folder, name, self.max_task_bytes), default_id=task_id)
        except (BadFile, InvalidTask) as exc:
            return getattr(exc, "reason", str(exc))
        except FileNotFoundError:
            return "vanished"
        return None if task.id == task_id else f"id {task.id!r} does not match"
