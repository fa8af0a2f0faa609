"""DropSite.recover(): what a writer killed between the steps of a move leaves
behind, and how each leftover is finished or discarded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dropsited import DropSite, TaskBuilder
from dropsited.protocol.holder import SEP, this_host
from dropsited.protocol.store import parse_temp_name

from .conftest import FakeClock, all_task_files, temp_files


def dead_writer_tag() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return SEP.join((this_host(), str(proc.pid), "1"))


def test_committed_move_is_finished(ds: DropSite, ws: Path) -> None:
    """Killed after unlinking the source (the commit point), before the rename."""
    tid = ds.submit(TaskBuilder("x", "me").build())
    task = ds.claim_next("w")
    task.result = {"ok": 1}
    task.log("done")
    tmp = ws / "done" / f".{tid}{SEP}{dead_writer_tag()}.tmp"
    tmp.write_bytes(task.to_json())
    os.unlink(next((ws / "active").iterdir()))
    assert all_task_files(ws) == {}
    actions = ds.recover()
    assert any("completed interrupted move" in a for a in actions)
    assert all_task_files(ws) == {tid: ["done"]} and temp_files(ws) == []
    assert ds.get_task(tid).result == {"ok": 1}


def test_uncommitted_move_is_discarded(ds: DropSite, ws: Path) -> None:
    """Killed after writing the temp file, before unlinking the source."""
    tid = ds.submit(TaskBuilder("x", "me").build())
    (ws / "done" / f".{tid}{SEP}{dead_writer_tag()}.tmp").write_text("{}")
    actions = ds.recover()
    assert any("removed uncommitted" in a for a in actions)
    assert all_task_files(ws) == {tid: ["inbox"]} and temp_files(ws) == []


def test_half_written_temp_of_a_killed_submit_is_not_promoted(ds: DropSite, ws: Path) -> None:
    """A submit killed mid-write leaves a partial temp file and no other copy.
    Promoting it put a corrupt `<id>.json` into inbox/; it is quarantined."""
    task = TaskBuilder("x", "me").build()
    task.log("inbox")
    partial = task.to_json()[:40]
    (ws / "inbox" / f".{task.id}{SEP}{dead_writer_tag()}.tmp").write_bytes(partial)
    ds.recover()
    assert all_task_files(ws) == {} and temp_files(ws) == []
    reasons = [json.loads(p.read_text()) for p in (ws / "quarantine").glob("*.reason")]
    assert len(reasons) == 1 and "unfinished write" in reasons[0]["error"]


def test_complete_temp_of_a_killed_submit_is_promoted(ds: DropSite, ws: Path) -> None:
    task = TaskBuilder("x", "me").build()
    task.log("inbox")
    (ws / "inbox" / f".{task.id}{SEP}{dead_writer_tag()}.tmp").write_bytes(task.to_json())
    ds.recover()
    assert all_task_files(ws) == {task.id: ["inbox"]}


def test_live_writers_temp_files_are_left_alone(ds: DropSite, ws: Path) -> None:
    from dropsited.protocol.store import temp_name
    tid = ds.submit(TaskBuilder("x", "me").build())
    mine = ws / "done" / temp_name(tid)
    mine.write_text("{}")
    assert parse_temp_name(mine.name)[2] == os.getpid()
    ds.recover()
    assert mine.exists()


def test_0_1_0_claim_without_claim_entry_is_reaped_by_age(ws: Path) -> None:
    """0.1.0 renames into active/ first and records the claim after (defect 3):
    a crash in between leaves a task with no `active` entry. Its claim time is
    taken from the rename (the file's ctime), so reap_stale still returns it."""
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    tid = ds.submit(TaskBuilder("x", "me").build())
    os.rename(ws / "inbox" / f"{tid}.json", ws / "active" / f"{tid}.json")  # 0.1.0's claim
    assert ds.reap_stale(timeout_seconds=300) == []
    clock.advance(301)
    assert ds.reap_stale(timeout_seconds=300) == [tid]
    assert all_task_files(ws) == {tid: ["inbox"]}


def test_0_1_0_claim_with_claim_entry_is_aged_from_it(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    tid = ds.submit(TaskBuilder("x", "me").build())
    task = ds.get_task(tid)
    task.log("active", at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(clock() - 1000)),
             claimed_by="old")
    (ws / "active" / f"{tid}.json").write_bytes(task.to_json())
    os.unlink(ws / "inbox" / f"{tid}.json")
    assert ds.reap_stale(timeout_seconds=300) == [tid]
