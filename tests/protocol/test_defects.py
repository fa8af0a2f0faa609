"""The eight defects of 0.1.0 (docs seed-format.md), each shown on the real
0.1.0 package (the expected-bad baseline, asserted as it is) and absent here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dropsite as legacy
import pytest

from dropsited import ClaimLost, DropSite, TaskBuilder

from .conftest import FakeClock, all_task_files, python_child


def legacy_ws(path: Path) -> legacy.DropSite:
    return legacy.DropSite(str(path))


# 1. A half-written file is moved to failed/ at once ----------------------------
def test_defect1_half_written_file(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    (tmp_path / "old" / "inbox" / "slow.json").write_text('{"title": "hal')
    old.list_tasks("inbox")
    assert os.listdir(tmp_path / "old" / "failed") == ["slow.json"]  # baseline: gone at once

    new = DropSite(tmp_path / "new", durable=False)
    path = tmp_path / "new" / "inbox" / "slow.json"
    path.write_text('{"title": "hal')
    assert new.claim_next("w") is None and new.list_tasks("inbox") == []
    assert path.exists() and os.listdir(tmp_path / "new" / "failed") == []
    path.write_text('{"title": "half written"}')
    assert new.claim_next("w").title == "half written"


# 2. No fsync ----------------------------------------------------------------------
def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = os.fsync

    def tracking(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", tracking)
    return seen


def test_defect2_durable_mode_fsyncs_file_and_folder(tmp_path: Path, monkeypatch) -> None:
    old = legacy_ws(tmp_path / "old")
    new = DropSite(tmp_path / "new", durable=True)
    fsynced = _fsynced(monkeypatch)
    task = legacy.TaskBuilder("x", "me").build()
    old.submit(task)
    old.complete(old.claim("w", task.id), {})
    assert fsynced == []  # baseline: nothing ever reaches the disk on purpose

    tid = new.submit(TaskBuilder("x", "me").build())
    assert str(tmp_path / "new" / "inbox") in fsynced
    fsynced.clear()
    new.complete(new.claim_next("w"), {"ok": 1})
    done = str(tmp_path / "new" / "done")
    temps = [p for p in fsynced if p.startswith(done + "/." + tid)]
    assert temps and fsynced.index(temps[0]) < fsynced.index(done)  # data, then the name
    assert (tmp_path / "new" / "done" / f"{tid}.json").exists()


def test_defect2_fast_mode_skips_fsync(tmp_path: Path, monkeypatch) -> None:
    new = DropSite(tmp_path / "new", durable=False)
    fsynced = _fsynced(monkeypatch)
    new.submit(TaskBuilder("x", "me").build())
    new.complete(new.claim_next("w"), {})
    assert fsynced == []


# 3. Claim renames first and records the claimer afterwards --------------------
def test_defect3_claim_records_holder_in_the_same_rename(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    task = legacy.TaskBuilder("x", "me").build()
    old.submit(task)
    # 0.1.0's claim, killed between its rename and its rewrite:
    os.rename(tmp_path / "old" / "inbox" / f"{task.id}.json",
              tmp_path / "old" / "active" / f"{task.id}.json")
    time.sleep(0.01)
    assert old.reap_stale(timeout_seconds=0) == []  # baseline: orphaned for ever

    ws = tmp_path / "new"
    new = DropSite(ws, durable=False)
    tid = new.submit(TaskBuilder("x", "me").build())
    child = python_child("""
        import os, sys
        from dropsited import DropSite
        DropSite(sys.argv[1], durable=False).claim("crashy", sys.argv[2])
        os._exit(9)  # dies right after the claim
    """, str(ws), tid)
    assert child.wait(30) == 9
    [name] = os.listdir(ws / "active")
    assert name.split("~")[1] == "crashy"
    assert new.reap() == [(tid, "holder_dead")]


# 4. Reaping by age only ----------------------------------------------------------
def test_defect4_long_task_not_handed_out_twice(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    task = legacy.TaskBuilder("long", "me").build()
    old.submit(task)
    held = old.claim("a", task.id)
    time.sleep(0.01)
    assert old.reap_stale(timeout_seconds=0) == [task.id]
    assert old.claim("b", task.id) is not None  # baseline: a second worker has it too
    assert held is not None

    clock = FakeClock()
    new = DropSite(tmp_path / "new", durable=False, clock=clock)
    new.submit(TaskBuilder("long", "me").build())
    held = new.claim_next("a")
    clock.advance(3600)
    assert new.reap_stale(timeout_seconds=0) == []
    assert new.claim_next("b") is None
    new.complete(held, {})


def test_defect4_dead_agents_task_returns_without_waiting(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    task = legacy.TaskBuilder("x", "me").build()
    old.submit(task)
    old.claim("dead-agent", task.id)  # and then the agent's process dies
    assert old.reap_stale(timeout_seconds=300) == []  # baseline: waits 300 s

    ws = tmp_path / "new"
    new = DropSite(ws, durable=False)
    tid = new.submit(TaskBuilder("x", "me").build())
    child = python_child("""
        import sys
        from dropsited import DropSite
        DropSite(sys.argv[1], durable=False).claim("dead-agent", sys.argv[2])
    """, str(ws), tid)
    assert child.wait(30) == 0
    assert new.reap_stale(timeout_seconds=300) == [tid]


# 5. A late completion leaves the task in two folders ---------------------------
def test_defect5_late_completion_keeps_one_copy(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    task = legacy.TaskBuilder("x", "me").build()
    old.submit(task)
    held = old.claim("a", task.id)
    time.sleep(0.01)
    old.reap_stale(timeout_seconds=0)
    old.complete(held, {"late": True})
    assert all_task_files(tmp_path / "old")[task.id] == ["inbox", "done"]  # baseline: two copies

    ws = tmp_path / "new"
    new = DropSite(ws, durable=False)
    tid = new.submit(TaskBuilder("x", "me").build())
    held = new.claim_next("a")
    new.reap(stale=-1, include_live=True)
    with pytest.raises(ClaimLost):
        new.complete(held, {"late": True})
    assert all_task_files(ws) == {tid: ["inbox"]}
    assert json.loads((ws / "late-results.jsonl").read_text())["result"] == {"late": True}


# 6. No backoff ---------------------------------------------------------------------
def test_defect6_failed_task_does_not_spin(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    task = legacy.TaskBuilder("x", "me").max_retries(3).build()
    old.submit(task)
    old.fail(old.claim("w", task.id), "boom")
    assert old.claim("w", task.id) is not None  # baseline: straight back, no wait

    clock = FakeClock()
    new = DropSite(tmp_path / "new", durable=False, clock=clock, rand=lambda: 0.5)
    tid = new.submit(TaskBuilder("x", "me").max_retries(3).build())
    new.fail(new.claim_next("w"), "boom")
    assert new.claim_next("w") is None
    waits = []
    for _ in range(3):
        start = clock()
        while (task := new.claim_next("w")) is None:
            clock.advance(0.05)
        waits.append(clock() - start)
        if task.retry_count < 3:
            new.fail(task, "boom")
    assert waits == pytest.approx([0.75, 1.5, 3.0], abs=0.06)  # 1 s base, doubling, jitter 0.5
    assert task.id == tid


# 7. Every poll parses the whole folder; names do not order the queue --------
def test_defect7_polls_parse_only_new_files(tmp_path: Path, monkeypatch) -> None:
    from dropsited.protocol import task as task_module
    counts = {"old": 0, "new": 0}
    real_old = legacy.Task.from_dict.__func__
    real_new = task_module.Task.from_json.__func__

    def old_counting(cls, d):
        counts["old"] += 1
        return real_old(cls, d)

    def new_counting(cls, raw, default_id=None):
        counts["new"] += 1
        return real_new(cls, raw, default_id)

    old = legacy_ws(tmp_path / "old")
    new = DropSite(tmp_path / "new", durable=False)
    for i in range(200):
        old.submit(legacy.TaskBuilder(f"t{i}", "me").build())
        new.submit(TaskBuilder(f"t{i}", "me").build())
    monkeypatch.setattr(legacy.Task, "from_dict", classmethod(old_counting))
    monkeypatch.setattr(task_module.Task, "from_json", classmethod(new_counting))
    for _ in range(3):
        old.list_tasks("inbox")
        new.claim_next("w")
    assert counts["old"] == 600  # baseline: every file, every poll
    assert counts["new"] == 200 + 3  # one scan, then only the claimed files


def test_defect7_file_names_order_the_queue(tmp_path: Path) -> None:
    old = legacy_ws(tmp_path / "old")
    new = DropSite(tmp_path / "new", durable=False)
    old_ids = [old.submit(legacy.TaskBuilder(f"t{i}", "me").build()) for i in range(50)]
    new_ids = [new.submit(TaskBuilder(f"t{i}", "me").build()) for i in range(50)]
    assert sorted(old_ids) != old_ids  # baseline: uuid4 names are in random order
    assert sorted(new_ids) == new_ids
    assert sorted(p.stem for p in (tmp_path / "new" / "inbox").iterdir()) == new_ids


# 8. Rename over an existing file (ext4 flushes its data first) -----------------
def _renames_over_existing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    over: list[str] = []
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def tracking(src, dst, *a, _real=real, **kw):
            if os.path.lexists(dst):
                over.append(str(dst))
            return _real(src, dst, *a, **kw)

        monkeypatch.setattr(os, name, tracking)
    return over


def test_defect8_no_rename_over_an_existing_file(tmp_path: Path, monkeypatch) -> None:
    over = _renames_over_existing(monkeypatch)
    old = legacy_ws(tmp_path / "old")
    for i in range(5):
        task = legacy.TaskBuilder(f"t{i}", "me").build()
        old.submit(task)
        claimed = old.claim("w", task.id)
        old.fail(claimed, "boom") if i % 2 else old.complete(claimed, {})
    assert len(over) >= 10  # baseline: every claim and move rewrites in place

    over.clear()
    for durable in (False, True):
        new = DropSite(tmp_path / f"new{durable}", durable=durable, retry_base=0)
        for i in range(5):
            new.submit(TaskBuilder(f"t{i}", "me").build())
        while (task := new.claim_next("w")) is not None:
            new.fail(task, "boom") if task.retry_count < 2 else new.complete(task, {})
    assert over == []
