"""Task lifecycle in one process: every move, its history entry, retries with
backoff (fake clock), routing and order compared with 0.1.0 itself."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import dropsite as legacy
import pytest

import dropsited
from dropsited import ClaimLost, DropSite, TaskBuilder, TaskNotFound

from .conftest import FakeClock, all_task_files, temp_files


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "fast"])
def test_happy_path_both_modes(ws: Path, durable: bool) -> None:
    ds = DropSite(ws, durable=durable)
    tid = ds.submit(TaskBuilder("t", "me").context({"n": 1}).build())
    task = ds.claim_next("worker")
    assert task is not None and task.id == tid and task.status == "active"
    assert task.assigned_to == "worker"
    assert [p.name.split("~")[1] for p in (ws / "active").iterdir()] == ["worker"]
    ds.complete(task, {"ok": True})
    assert all_task_files(ws) == {tid: ["done"]}
    assert temp_files(ws) == []
    data = json.loads((ws / "done" / f"{tid}.json").read_text())
    assert data["status"] == "done" and data["result"] == {"ok": True}
    assert [e["status"] for e in data["history"]] == ["pending", "inbox", "active", "done"]
    assert data["history"][2]["claimed_by"] == "worker"
    assert set(data) == {"id", "title", "created_by", "status", "description", "assigned_to",
                         "priority", "context", "result", "tags", "parent_id", "retry_count",
                         "max_retries", "created_at", "updated_at", "history"}
    assert ds.claim_next("worker") is None


def test_feedback_round_trip(ds: DropSite, ws: Path) -> None:
    tid = ds.submit(TaskBuilder("draft", "me").build())
    task = ds.claim_next("writer")
    ds.request_feedback(task, {"question": "ok?"})
    assert all_task_files(ws) == {tid: ["feedback"]}
    held = ds.list_tasks("feedback")[0]
    assert held.context["_feedback_request"] == {"question": "ok?"}
    ds.respond_feedback(tid, "yes")
    again = ds.claim_next("writer")
    assert again.id == tid
    assert again.context == {"_feedback_request": {"question": "ok?"}, "_feedback_response": "yes"}
    ds.complete(again, {"sent": True})
    statuses = [e["status"] for e in ds.get_task(tid).history]
    assert statuses == ["pending", "inbox", "active", "feedback", "inbox", "active", "done"]
    with pytest.raises(TaskNotFound):
        ds.respond_feedback(tid, "again")


def test_block_unblock(ds: DropSite, ws: Path) -> None:
    tid = ds.submit(TaskBuilder("needs key", "me").build())
    ds.block(ds.claim_next("w"), "waiting for API key")
    assert all_task_files(ws) == {tid: ["blocked"]}
    assert ds.claim_next("w") is None
    assert ds.get_task(tid).history[-1]["reason"] == "waiting for API key"
    ds.unblock(tid)
    task = ds.claim_next("w")
    assert task.id == tid
    assert task.history[-2]["unblocked"] is True


def legacy_retry_trace(root: Path, max_retries: int) -> list[tuple[str, int]]:
    ds = legacy.DropSite(str(root))
    task = legacy.TaskBuilder("x", "me").max_retries(max_retries).build()
    ds.submit(task)
    trace = []
    while (claimed := ds.claim("w", task.id)) is not None:
        ds.fail(claimed, "boom")
        trace.append((ds.get_task(task.id).status, ds.get_task(task.id).retry_count))
    return trace


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retry_to_failed_counts_like_0_1_0(tmp_path: Path, max_retries: int) -> None:
    ds = DropSite(tmp_path / "new", durable=False, retry_base=0)
    tid = ds.submit(TaskBuilder("x", "me").max_retries(max_retries).build())
    trace = []
    while (task := ds.claim_next("w")) is not None:
        dest = ds.fail(task, "boom")
        trace.append((ds.get_task(tid).status, ds.get_task(tid).retry_count))
        assert dest in ("inbox", "failed")
    assert trace == legacy_retry_trace(tmp_path / "old", max_retries)
    assert trace[-1] == ("failed", max_retries + 1)
    assert all_task_files(tmp_path / "new") == {tid: ["failed"]}


def test_failed_task_waits_for_its_backoff(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock, rand=lambda: 1.0, retry_base=10)
    tid = ds.submit(TaskBuilder("x", "me").build())
    ds.fail(ds.claim_next("w"), "boom")  # attempt 1: wait base * 2**0 = 10 s
    assert ds.get_task(tid).history[-1]["not_before"]
    assert ds.claim_next("w") is None
    clock.advance(9.9)
    assert ds.claim_next("w") is None
    clock.advance(0.2)
    task = ds.claim_next("w")
    assert task is not None and task.id == tid
    ds.fail(task, "boom")  # attempt 2: 20 s
    clock.advance(19.5)
    assert ds.claim_next("w") is None
    clock.advance(1)
    assert ds.claim_next("w").id == tid


def test_backoff_is_visible_to_a_fresh_process_view(ws: Path) -> None:
    """not_before lives in the file (last history entry), not in memory."""
    clock = FakeClock()
    DropSite(ws, durable=False, clock=clock, rand=lambda: 0.0, retry_base=60)
    first = DropSite(ws, durable=False, clock=clock, rand=lambda: 0.0, retry_base=60)
    first.submit(TaskBuilder("x", "me").build())
    first.fail(first.claim_next("w"), "boom")  # 30..60 s; rand=0 gives 30
    other = DropSite(ws, durable=False, clock=clock)
    assert other.claim_next("w") is None
    clock.advance(31)
    assert other.claim_next("w") is not None


def test_tempfail_does_not_use_an_attempt(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    tid = ds.submit(TaskBuilder("x", "me").max_retries(0).build())
    for _ in range(3):
        task = ds.claim_next("w")
        assert task is not None
        assert ds.fail(task, "busy", tempfail=True) == "inbox"
        clock.advance(3600)
    assert ds.get_task(tid).retry_count == 0


def test_delay_holds_a_new_task_back(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    ds.submit(TaskBuilder("later", "me").delay(5).build())
    assert ds.claim_next("w") is None
    clock.advance(5.01)
    assert ds.claim_next("w").title == "later"


def test_release_returns_task_without_an_attempt(ds: DropSite, ws: Path) -> None:
    tid = ds.submit(TaskBuilder("x", "me").assign("w").build())
    task = ds.claim_next("w")
    ds.release(task)
    back = ds.claim_next("w")
    assert back.id == tid and back.retry_count == 0
    assert back.history[-2]["released"] is True


# -- order and routing, compared with 0.1.0 -----------------------------------
ASSIGNED = [None, "alice", "bob"]
TAGS = [[], ["code"], ["docs"], ["code", "docs"]]
FILTERS = [None, ["code"], ["docs", "ops"]]


def _routing_tasks(mod):
    tasks = []
    for n, (assigned, tags, prio) in enumerate(itertools.product(ASSIGNED, TAGS, [1, 5, 3])):
        b = mod.TaskBuilder(f"t{n}", "me").priority(prio).tag(*tags)
        if assigned:
            b = b.assign(assigned)
        tasks.append(b.build())
    return tasks


@pytest.mark.parametrize("tags", FILTERS, ids=str)
def test_claim_order_and_routing_match_0_1_0_agent_loop(tmp_path: Path, tags, capsys) -> None:
    """Which tasks an agent takes, and in which order, equals 0.1.0's AgentLoop."""
    old = legacy.DropSite(str(tmp_path / "old"))
    for task in _routing_tasks(legacy):
        old.submit(task)
    taken_old: list[str] = []
    legacy.AgentLoop(old, "alice", lambda t: taken_old.append(t.title) or {},
                     filter_tags=tags).run(once=True)

    new = DropSite(tmp_path / "new", durable=False)
    for task in _routing_tasks(dropsited):
        new.submit(task)
    taken_new = []
    while (task := new.claim_next("alice", tags)) is not None:
        taken_new.append(task.title)
        new.complete(task, {})
    assert taken_new == taken_old


def test_list_tasks_filters_and_order_match_0_1_0(tmp_path: Path) -> None:
    old = legacy.DropSite(str(tmp_path / "old"))
    new = DropSite(tmp_path / "new", durable=False)
    pairs = zip(_routing_tasks(legacy), _routing_tasks(dropsited), strict=True)
    for stamp, (task_old, task_new) in enumerate(pairs, 1):
        # identical ids and times, so ties break identically
        for t in (task_old, task_new):
            t.id = f"{stamp:032x}"
            t.created_at = f"2026-01-01T00:00:{stamp % 7:02d}+00:00"
        old.submit(task_old)
        new.submit(task_new)
    for agent, tags in itertools.product([None, "alice"], FILTERS):
        assert ([t.id for t in new.list_tasks("inbox", agent=agent, tags=tags)]
                == [t.id for t in old.list_tasks("inbox", agent=agent, tags=tags)])


def test_creation_order_breaks_priority_ties(ds: DropSite) -> None:
    ids = [ds.submit(TaskBuilder(f"t{i}", "me").build()) for i in range(50)]
    assert ids == sorted(ids)  # time-ordered ids
    got = []
    while (task := ds.claim_next("w")) is not None:
        got.append(task.id)
        ds.complete(task, {})
    assert got == ids


def test_new_urgent_task_from_another_writer_is_seen(ds: DropSite, ws: Path) -> None:
    """The index is not rescanned per call, but a task another process drops
    is seen once the index has nothing left, and at the latest after
    refresh_interval."""
    for i in range(3):
        ds.submit(TaskBuilder(f"t{i}", "me").build())
    assert ds.claim_next("w").title == "t0"
    other = DropSite(ws, durable=False)
    other.submit(TaskBuilder("urgent", "me").priority(1).build())
    ds.inbox_index().refresh_interval = 0
    assert ds.claim_next("w").title == "urgent"


def test_late_result_when_claim_lost(ds: DropSite, ws: Path) -> None:
    tid = ds.submit(TaskBuilder("x", "me").build())
    task = ds.claim_next("w")
    ds.reap(stale=-1, include_live=True)  # a human takes it back
    with pytest.raises(ClaimLost):
        ds.complete(task, {"answer": 42})
    assert all_task_files(ws) == {tid: ["inbox"]}
    lines = (ws / "late-results.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["task_id"] == tid and record["result"] == {"answer": 42}
    assert record["outcome"] == "done" and record["agent"] == "w"
