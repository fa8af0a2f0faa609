"""What the review page shows, read from the workspace: no HTML here, only JSON-able data.

`snapshot` gathers what waits for a person (feedback/, inbox/ tasks assigned to a
human agent name, blocked/), recent failures, queue depths, agents and the chart
series. `Chart` keeps the queue depths seen over the last hour (sampled while the
page server runs) and counts finished tasks per minute from the files' mtimes
(a file's mtime is when it reached done/ or failed/).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from ..cli.review_render import block_reason, parse_request
from ..protocol import Task
from .ops import Workspace

HOUR = 3600.0
SAMPLE_EVERY = 10.0
MINUTE = 60
MAX_CARDS = 100
FAILED_SHOWN = 10


def card(task: Task, folder: str) -> dict:
    """One task as the page draws it: every text the person needs, history included."""
    view: dict[str, Any] = {
        "id": task.id, "folder": folder, "title": task.title, "created_by": task.created_by,
        "assigned_to": task.assigned_to, "priority": task.priority, "tags": task.tags,
        "updated_at": task.updated_at, "description": task.description,
        "context": {k: v for k, v in task.context.items()
                    if not k.startswith("_") and k != "options"},  # options become buttons
        "history": task.history,
    }
    if folder == "feedback":
        request = parse_request(task.context.get("_feedback_request"))
        view.update(question=request.question, draft=request.draft, options=request.options,
                    details=request.extra)
    elif folder == "blocked":
        view["reason"] = block_reason(task)
    elif folder == "failed":
        last = task.history[-1] if task.history else {}
        view["error"] = str(last.get("error", "")) if isinstance(last, dict) else ""
    else:
        options = task.context.get("options")
        view["options"] = [str(o) for o in options] if isinstance(options, list) else []
    return view


def _ready(ws: Workspace, task: Task, now: float) -> bool:
    """Due now and every dependency done: what `dropsited review` offers a person too."""
    if task.not_before is not None and task.not_before > now:
        return False
    return all((found := ws.ds.locate(dep)) is not None and found.folder == "done"
               for dep in task.depends_on)


def waiting(ws: Workspace, humans: list[str]) -> dict[str, list[dict]]:
    ds, now = ws.ds, time.time()
    assigned = [t for t in ds.list_tasks("inbox")
                if t.assigned_to in humans and _ready(ws, t, now)]
    return {
        "feedback": [card(t, "feedback") for t in ds.list_tasks("feedback")[:MAX_CARDS]],
        "assigned": [card(t, "inbox") for t in assigned[:MAX_CARDS]],
        "blocked": [card(t, "blocked") for t in ds.list_tasks("blocked")[:MAX_CARDS]],
    }


def recent_failures(ws: Workspace) -> list[dict]:
    failed = sorted(ws.ds.list_tasks("failed"), key=lambda t: t.updated_at, reverse=True)
    return [card(t, "failed") for t in failed[:FAILED_SHOWN]]


class Chart:
    """Queue depth samples of the last hour, and done/failed counts per minute."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self.depths: deque[tuple[float, dict]] = deque()
        self.lock = threading.Lock()

    def sample(self, queues: dict) -> None:
        now = self.clock()
        with self.lock:
            if self.depths and now - self.depths[-1][0] < SAMPLE_EVERY:
                return  # one sample per SAMPLE_EVERY seconds is enough for an hour's chart
            self.depths.append((now, dict(queues)))
            while self.depths and now - self.depths[0][0] > HOUR:
                self.depths.popleft()

    def series(self, ws: Workspace) -> dict:
        now = self.clock()
        with self.lock:
            depth = [{"t": t, "inbox": q.get("inbox", 0), "active": q.get("active", 0),
                      "waiting": q.get("feedback", 0) + q.get("blocked", 0)}
                     for t, q in self.depths]
        return {"now": now, "depth": depth, "throughput": self._per_minute(ws, now)}

    @staticmethod
    def _per_minute(ws: Workspace, now: float) -> list[dict]:
        start = int(now // MINUTE * MINUTE) - 59 * MINUTE
        buckets = [{"t": start + i * MINUTE, "done": 0, "failed": 0} for i in range(60)]
        for folder in ("done", "failed"):
            for entry in ws.ds.store.entries(folder):
                if not entry.name.endswith(".json") or entry.name.startswith("."):
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                index = int((mtime - start) // MINUTE)
                if 0 <= index < 60:
                    buckets[index][folder] += 1
        return buckets


def snapshot(ws: Workspace, humans: list[str], chart: Chart) -> dict:
    queues = ws.stats()
    chart.sample(queues)
    agents = ws.agents()
    return {
        "workspace": str(ws.ds.workspace.resolve()),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "humans": humans,
        "queues": queues,
        "waiting": waiting(ws, humans),
        "failed": recent_failures(ws),
        "daemon": agents["daemon"],
        "agents": agents["agents"],
        "chart": chart.series(ws),
    }


def signature(ws: Workspace) -> tuple:
    """Changes whenever a task enters or leaves a folder or an agent record is rewritten."""
    marks = []
    for folder in ("inbox", "active", "done", "failed", "blocked", "feedback", "agents"):
        try:
            info = os.stat(ws.ds.workspace / folder)
            marks.append((info.st_mtime_ns, info.st_nlink))
        except OSError:
            marks.append(None)
    return tuple(marks)
