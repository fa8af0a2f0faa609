"""Schedules and retention from a real daemon: `every: 1s` drops, a restart drops no
slot twice, `dropsited schedules` lists them, and `retention:` archives done/ tasks."""

from __future__ import annotations

import json
from collections import Counter

import yaml
from harness import agent, wait_until


def _daemon(run_daemon, extra: dict):
    d = run_daemon([agent("ok", ["/bin/echo", "{}"], tags=["tick"])], start=False)
    doc = yaml.safe_load(d.manifest.read_text())
    d.manifest.write_text(yaml.safe_dump({**doc, **extra}, sort_keys=False))
    return d.start()


def _scheduled(d) -> list[str]:
    return [t.id for f in ("inbox", "active", "done", "failed") for t in d.ds.list_tasks(f)
            if t.history and t.history[0].get("schedule") == "tick"]


def test_every_second_drops_and_a_restart_drops_no_slot_twice(run_daemon):
    schedule = {"schedules": {"tick": {"every": "1s", "task": {"title": "t", "tags": ["tick"]}}}}
    d = _daemon(run_daemon, schedule)
    wait_until(lambda: len(_scheduled(d)) >= 2, 10, "two scheduled drops")
    assert d.stop() == 0
    before = set(_scheduled(d))
    d.start()
    wait_until(lambda: len(set(_scheduled(d)) - before) >= 2, 10, "drops after the restart")
    out = d.cli("schedules", str(d.ws), "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)[0]
    assert row["name"] == "tick" and row["describe"] == "every 1s" and row["next_at"]
    assert d.stop() == 0
    ids = _scheduled(d)
    assert len(ids) == len(set(ids))  # ids are per slot: a repeat would be a clash
    slots = Counter(d.ds.get_task(i).history[0]["slot"] for i in ids)
    assert max(slots.values()) == 1
    assert "dropped" in d.stderr() and "Traceback" not in d.stderr()


def test_retention_archives_old_done_tasks_from_the_running_daemon(run_daemon):
    d = _daemon(run_daemon, {"retention": {"done": "1s", "interval": "1s", "rate": 1000}})
    ids = [d.drop("x", tags=("tick",)) for _ in range(3)]
    for task_id in ids:
        d.wait_in(task_id, "done")
    wait_until(lambda: not d.ds.list_tasks("done"), 15, "done/ archived")
    out = d.cli("show", str(d.ws), ids[0], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["folder"].startswith("archive/")
    assert len(list((d.ws / "archive").glob("*/*.json"))) == 3
    late = d.drop("y", tags=("tick",))  # dispatch still works alongside it
    d.wait_in(late, "done")
    assert d.stop() == 0
