"""What one frame of `dropsited top` holds (`snapshot`, reads the workspace) and how it
looks (`render`, pure)."""

from __future__ import annotations

import os
import time
from datetime import datetime

from ..protocol import DropSite
from ..protocol.holder import parse_active_name
from ..protocol.store import BadFile
from ..protocol.task import parse_iso
from .common import clip, table, visible

WINDOW = 60.0  # seconds of throughput


def snapshot(ds: DropSite, now: float | None = None) -> dict:
    """Queues, the daemon, agents with their current tasks, and throughput over WINDOW."""
    from ..daemon.status import daemon_running, read_daemon_record

    now = time.time() if now is None else now
    queues = ds.stats()
    queues["quarantine"] = len(ds.quarantined())
    running = daemon_running(ds.workspace)
    record = read_daemon_record(ds.workspace) or {}
    active = _active(ds)
    return {
        "workspace": str(ds.workspace),
        "at": datetime.fromtimestamp(now).isoformat(timespec="seconds"),
        "daemon": {"running": running, "pid": record.get("pid") if running else None},
        "queues": queues,
        "throughput": {"window_seconds": int(WINDOW),
                       "done": _finished_since(ds, "done", now - WINDOW),
                       "failed": _finished_since(ds, "failed", now - WINDOW)},
        "agents": [_agent(a, active) for a in ds.list_agents()],
    }


def _agent(record: dict, active: dict[str, tuple[str, str]]) -> dict:
    """An agents/*.json record; its current tasks are the daemon's `running` ids plus
    whatever active/ says it holds (AgentLoops and humans publish no `running`)."""
    running = [str(t) for t in record.get("running") or []]
    running += [t for t, (_, holder) in active.items()
                if holder == record.get("name") and t not in running]
    titles = {t: title for t, (title, _) in active.items()}
    return {
        "name": record.get("name", "?"),
        "mode": record.get("mode") or record.get("role") or "-",
        "state": record.get("state") or "-",
        "running": [{"id": t, "title": titles.get(t, "")} for t in running],
        "tasks_done": record.get("tasks_done", 0),
        "tasks_failed": record.get("tasks_failed", 0),
        "last_error": record.get("last_error") or "",
    }


def _active(ds: DropSite) -> dict[str, tuple[str, str]]:
    """Task id -> (title, holding agent) for every task in active/."""
    held = {}
    for entry in ds.store.entries("active"):
        parsed = parse_active_name(entry.name)
        if parsed is None:
            continue
        task_id, holder = parsed
        try:
            title = ds.store.load_entry("active", entry.name).title
        except (FileNotFoundError, BadFile, ValueError):
            continue
        held[task_id] = (title, holder.agent if holder else "")
    return held


def _finished_since(ds: DropSite, folder: str, since: float) -> int:
    """Tasks whose last `folder` history entry is after `since`.

    A file's mtime is when it reached the folder, so only recent files are parsed.
    """
    count = 0
    for entry in ds.store.entries(folder):
        if not entry.name.endswith(".json") or entry.name.startswith("."):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < since - 1:
                continue
            task = ds.store.load_entry(folder, entry.name)
        except (FileNotFoundError, BadFile, ValueError):
            continue
        moments = [parse_iso(e.get("at", "")) for e in task.history
                   if isinstance(e, dict) and e.get("status") == folder]
        if moments and (moments[-1] or 0) >= since:
            count += 1
    return count


def render(frame: dict, width: int | None = None) -> str:
    daemon = frame["daemon"]
    who = f"daemon pid {daemon['pid']}" if daemon["running"] else "no daemon running"
    tp = frame["throughput"]
    lines = [
        visible(f"dropsited top  {frame['workspace']}  {frame['at'].replace('T', ' ')}  ({who})"),
        "queues      " + visible("  ".join(f"{k} {v}" for k, v in frame["queues"].items())),
        f"last {tp['window_seconds']}s     done {tp['done']}  failed {tp['failed']}"
        f"  ({tp['done'] * 60 / tp['window_seconds']:.0f}/min)",
        "",
    ]
    agents = frame["agents"]
    if agents:
        rows = ([a["name"], a["mode"], a["state"], a["tasks_done"], a["tasks_failed"],
                 _current(a["running"]), clip(a["last_error"], 40) or "-"] for a in agents)
        lines += table(rows, ("agent", "mode", "state", "done", "failed", "current task",
                              "last error")).splitlines()
    else:
        lines.append("(no agents registered in agents/)")
    if width:
        lines = [line[:width] for line in lines]
    return "\n".join(lines)


def _current(running: list[dict]) -> str:
    if not running:
        return "-"
    first = running[0]
    text = f"{first['id'][:8]} {clip(first['title'], 28)}".rstrip()
    return text + (f" (+{len(running) - 1})" if len(running) > 1 else "")


def terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0
