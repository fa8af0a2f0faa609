"""Checks shared by the chaos, fault and load suites: where every task is, and what is left."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import psutil

FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback")
MARKER_ENV = "DROPSITED_DAEMON"


def task_id_of(name: str) -> str | None:
    """The task id a folder entry holds (`<id>.json` or active/'s `<id>~holder.json`)."""
    if name.startswith(".") or not name.endswith(".json"):
        return None
    return name[:-5].split("~")[0]


def folders_by_task(ws: Path) -> dict[str, list[str]]:
    """task id -> every folder holding a file for it (more than one is a protocol bug)."""
    where: dict[str, list[str]] = collections.defaultdict(list)
    for folder in FOLDERS:
        for name in os.listdir(ws / folder):
            task_id = task_id_of(name)
            if task_id:
                where[task_id].append(folder)
    return where


def temp_files(ws: Path) -> list[str]:
    return [f"{folder}/{name}" for folder in FOLDERS for name in os.listdir(ws / folder)
            if name.startswith(".") and name.endswith(".tmp")]


def quarantine_entries(ws: Path) -> list[str]:
    qdir = ws / "quarantine"
    return sorted(os.listdir(qdir)) if qdir.exists() else []


def agents_alive(ws: Path) -> list[psutil.Process]:
    """Live processes whose daemon marker names this workspace."""
    mark = str(ws)
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if mark in proc.environ().get(MARKER_ENV, ""):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def runs_per_task(log: Path) -> collections.Counter:
    """How often each task id was started, from the agents' append-only run log."""
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line for line in log.read_text().split() if line)


def assert_all_done_once(ws: Path, ids: set[str]) -> None:
    where = folders_by_task(ws)
    twice = {t: f for t, f in where.items() if len(f) > 1}
    assert not twice, f"tasks in more than one folder: {list(twice.items())[:5]}"
    missing = ids - set(where)
    assert not missing, f"{len(missing)} tasks lost, e.g. {sorted(missing)[:5]}"
    not_done = {t: f for t, f in where.items() if t in ids and f != ["done"]}
    assert not not_done, f"{len(not_done)} tasks not in done/: {list(not_done.items())[:5]}"


def report(figures: dict) -> None:
    """Print a suite's figures; with DROPSITED_FIGURES=FILE also append them to FILE."""
    print(json.dumps(figures))
    path = os.environ.get("DROPSITED_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(figures) + "\n")
