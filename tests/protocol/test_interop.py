"""Both directions with the real DropSite 0.1.0 package as a foreign client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dropsite as legacy

from dropsited import AgentLoop, DropSite, TaskBuilder

from .conftest import all_task_files


def test_0_1_0_submits_dropsited_agent_loop_completes(ws: Path, capsys) -> None:
    old = legacy.DropSite(str(ws))
    ids = []
    for i in range(5):
        task = (legacy.TaskBuilder(f"job {i}", "larry").describe("d").priority(5 - i)
                .context({"n": i}).assign("coder").tag("code").build())
        old.submit(task)
        ids.append(task.id)
    flaky = legacy.TaskBuilder("flaky", "larry").tag("code").max_retries(1).build()
    old.submit(flaky)

    def handler(task):
        if task.title == "flaky":
            raise RuntimeError("no luck")
        return {"double": task.context["n"] * 2}

    new = DropSite(ws, retry_base=0)
    AgentLoop(new, "coder", handler, filter_tags=["code"], verbose=False).run(once=True)

    done = {t.id: t for t in old.list_tasks("done")}
    assert sorted(done) == sorted(ids)
    for tid in ids:
        task = done[tid]
        assert task.result == {"double": task.context["n"] * 2}
        assert task.status == "done" and task.assigned_to == "coder"
        assert [e["status"] for e in task.history] == ["pending", "inbox", "active", "done"]
        assert task.history[2]["claimed_by"] == "coder"
        assert task.created_by == "larry" and task.tags == ["code"] and task.description == "d"
    [failed] = old.list_tasks("failed")
    assert failed.id == flaky.id and failed.retry_count == 2
    assert [e["status"] for e in failed.history][-1] == "failed"
    assert failed.history[-1]["error"] == "no luck"
    assert old.stats() == {"inbox": 0, "active": 0, "done": 5, "failed": 1,
                           "blocked": 0, "feedback": 0}


LEGACY_LOOP = """
import sys
import dropsite
ds = dropsite.DropSite(sys.argv[1])
dropsite.AgentLoop(ds, "oldbot", lambda t: {"seen": t.title, "ctx": t.context},
                   filter_tags=["legacy"]).run(once=True)
"""


def test_dropsited_submits_0_1_0_agent_loop_completes(ws: Path) -> None:
    new = DropSite(ws)
    ids = [new.submit(TaskBuilder(f"t{i}", "me").context({"i": i}).tag("legacy")
                      .priority(1 + i % 3).build()) for i in range(6)]
    other = new.submit(TaskBuilder("not for it", "me").tag("other").build())
    out = subprocess.run([sys.executable, "-c", LEGACY_LOOP, str(ws)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    done = {t.id: t for t in new.list_tasks("done")}
    assert sorted(done) == sorted(ids)
    for tid in ids:
        task = new.get_task(tid)
        assert task.result == {"seen": task.title, "ctx": task.context}
        assert [e["status"] for e in task.history] == ["pending", "inbox", "active", "done"]
        assert task.history[2]["claimed_by"] == "oldbot" and task.assigned_to == "oldbot"
    assert all_task_files(ws)[other] == ["inbox"]
    assert new.claim_next("me").id == other


def test_0_1_0_stats_and_listings_count_our_tasks(ws: Path) -> None:
    new = DropSite(ws, durable=False)
    for i in range(4):
        new.submit(TaskBuilder(f"t{i}", "me").build())
    held = new.claim_next("w")  # a holder-named file in active/
    new.block(new.claim_next("w"), "waiting")
    new.request_feedback(new.claim_next("w"), {"q": "?"})
    old = legacy.DropSite(str(ws))
    assert old.stats() == {"inbox": 1, "active": 1, "done": 0, "failed": 0,
                           "blocked": 1, "feedback": 1}
    assert [t.id for t in old.list_tasks("active")] == [held.id]
    new.complete(held, {"ok": True})
    assert old.list_tasks("done")[0].result == {"ok": True}


def test_feedback_answered_with_0_1_0(ws: Path) -> None:
    new = DropSite(ws, durable=False)
    tid = new.submit(TaskBuilder("draft", "me").build())
    new.request_feedback(new.claim_next("w"), {"question": "send?"})
    legacy.DropSite(str(ws)).respond_feedback(tid, "approved")
    task = new.claim_next("w")
    assert task.id == tid and task.context["_feedback_response"] == "approved"
    assert task.history[-2]["feedback_received"] is True


def test_backoff_survives_a_0_1_0_rewrite(ws: Path) -> None:
    """not_before lives in a history entry, which 0.1.0 keeps when it rewrites."""
    new = DropSite(ws, durable=False, retry_base=3600)
    tid = new.submit(TaskBuilder("x", "me").build())
    new.fail(new.claim_next("w"), "boom")
    old = legacy.DropSite(str(ws))
    task = old.list_tasks("inbox")[0]
    old._write("inbox", task)  # 0.1.0 rewriting the file (its only way to write)
    assert "not_before" in task.history[-1]
    assert DropSite(ws, durable=False).claim_next("w") is None
    assert new.get_task(tid).not_before is not None
