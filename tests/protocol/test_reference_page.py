"""Every Python example of the DropSite 0.1.0 project page, run against both
0.1.0 (`dropsite`) and dropsited, with the same observable results."""

from __future__ import annotations

import types
from pathlib import Path

import dropsite as legacy
import pytest

import dropsited

from .conftest import python_child

IMPLS = {"0.1.0": legacy, "dropsited": dropsited}


def open_ws(mod: types.ModuleType, path: Path):
    if mod is dropsited:
        return dropsited.DropSite(path, retry_base=0)  # no backoff wait in tests
    return legacy.DropSite(str(path))


def drain(mod: types.ModuleType, loop, passes: int = 10) -> None:
    """Run an AgentLoop pass by pass (0.1.0 handles each task once per pass)."""
    for _ in range(passes):
        loop.run(once=True)


@pytest.fixture(params=list(IMPLS))
def mod(request) -> types.ModuleType:
    return IMPLS[request.param]


def test_quick_start(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "workspace")
    for folder in ("inbox", "active", "done", "failed", "blocked", "feedback", "agents"):
        assert (tmp_path / "workspace" / folder).is_dir()
    ds.register_agent("larry", role="orchestrator")
    ds.register_agent("coder", role="builder")
    task = (
        mod.TaskBuilder("Build auth API", "larry")
        .describe("Build a REST API for user authentication")
        .context({"language": "python", "framework": "fastapi"})
        .assign("coder")
        .tag("code")
        .build()
    )
    ds.submit(task)
    assert (tmp_path / "workspace" / "inbox" / f"{task.id}.json").exists()

    tasks = ds.list_tasks("inbox", tags=["code"])
    claimed = ds.claim("coder", tasks[0].id)
    ds.complete(claimed, result={"files_created": ["api.py", "models.py"],
                                 "notes": "Used FastAPI with JWT auth"})
    done = ds.list_tasks("done")
    assert [t.id for t in done] == [task.id]
    assert done[0].result == {"files_created": ["api.py", "models.py"],
                              "notes": "Used FastAPI with JWT auth"}
    assert [e["status"] for e in done[0].history] == ["pending", "inbox", "active", "done"]
    assert done[0].history[2]["claimed_by"] == "coder"
    assert done[0].assigned_to == "coder"

    second = mod.TaskBuilder("Another", "larry").tag("code").build()
    ds.submit(second)

    def code_handler(task):
        return {"files_created": ["api.py"], "status": "done"}

    loop = mod.AgentLoop(ds, "coder", handler=code_handler, filter_tags=["code"])
    loop.run(once=True)
    finished = {t.id: t for t in ds.list_tasks("done")}
    assert finished[second.id].result == {"files_created": ["api.py"], "status": "done"}
    assert ds.stats() == {"inbox": 0, "active": 0, "done": 2, "failed": 0,
                          "blocked": 0, "feedback": 0}
    assert {a for a in ("larry", "coder")} <= {p.stem for p in (tmp_path / "workspace" / "agents").iterdir()}


def test_human_in_the_loop(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")
    trade = (mod.TaskBuilder("Approve trade", "larry")
             .context({"action": "buy", "ticker": "NVDA", "size": 100,
                       "rationale": "Bullish GEX flip detected"})
             .assign("human").tag("approval").build())
    ds.submit(trade)
    assert [t.id for t in ds.list_tasks("inbox", agent="human")] == [trade.id]
    assert ds.list_tasks("inbox", agent="someone-else") == []

    email = mod.TaskBuilder("Write email", "larry").context({"to": "bob"}).tag("mail").build()
    ds.submit(email)

    def my_agent(task):
        draft = f"Dear {task.context['to']}"
        ds.request_feedback(task, {"question": "Send this email?", "draft": draft,
                                   "options": ["approve", "revise", "reject"]})
        return {"status": "awaiting_feedback"}

    loop = mod.AgentLoop(ds, "mailer", handler=my_agent, filter_tags=["mail"])
    loop.run(once=True)
    waiting = ds.list_tasks("feedback")
    assert [t.id for t in waiting] == [email.id]
    assert waiting[0].context["_feedback_request"]["draft"] == "Dear bob"

    ds.respond_feedback(email.id, "approved, send it")
    back = ds.list_tasks("inbox", tags=["mail"])
    assert [t.id for t in back] == [email.id]
    assert back[0].context["_feedback_response"] == "approved, send it"
    assert back[0].history[-1]["status"] == "inbox"
    assert back[0].history[-1]["feedback_received"] is True


def test_works_with_any_llm(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")

    class FakeClient:  # stands in for anthropic.Anthropic(): no network in tests
        def create(self, **kw):
            return types.SimpleNamespace(content=[types.SimpleNamespace(
                text=f"echo: {kw['messages'][0]['content']}")])

    client = FakeClient()

    def claude_agent(task):
        response = client.create(model="m", max_tokens=1024,
                                 messages=[{"role": "user", "content": task.description}])
        return {"response": response.content[0].text}

    task = mod.TaskBuilder("Analyse", "larry").describe("2+2?").tag("analysis").build()
    ds.submit(task)
    mod.AgentLoop(ds, "claude", handler=claude_agent, filter_tags=["analysis"]).run(once=True)
    assert ds.list_tasks("done")[0].result == {"response": "echo: 2+2?"}


def test_priority_queue(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")
    ds.submit(mod.TaskBuilder("Low", "user").priority(10).build())
    ds.submit(mod.TaskBuilder("Normal", "user").priority(5).build())
    ds.submit(mod.TaskBuilder("Urgent", "user").priority(1).build())
    assert [t.title for t in ds.list_tasks("inbox")] == ["Urgent", "Normal", "Low"]
    order = []
    mod.AgentLoop(ds, "w", handler=lambda t: order.append(t.title) or {}).run(once=True)
    assert order == ["Urgent", "Normal", "Low"]


def test_auto_retry(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")
    task = mod.TaskBuilder("Flaky API call", "user").max_retries(5).build()
    ds.submit(task)
    attempts = []

    def flaky(t):
        attempts.append(t.retry_count)
        raise RuntimeError("API down")

    drain(mod, mod.AgentLoop(ds, "w", handler=flaky))
    assert attempts == [0, 1, 2, 3, 4, 5]  # the first try and 5 retries
    failed = ds.list_tasks("failed")
    assert [t.id for t in failed] == [task.id]
    assert failed[0].retry_count == 6
    assert failed[0].history[-1] == {**failed[0].history[-1], "status": "failed",
                                     "error": "API down"}
    assert [e["attempt"] for e in failed[0].history if e["status"] == "retry"] == [1, 2, 3, 4, 5]


def test_tag_based_routing(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")
    ids = {tag: ds.submit(mod.TaskBuilder(f"{tag} job", "u").tag(tag).build())
           for tag in ("content", "code", "deploy")}
    seen: dict[str, list[str]] = {}

    def handler_for(name):
        return lambda t: seen.setdefault(name, []).append(t.id) or {}

    for name, tag in (("writer", "content"), ("coder", "code"), ("ops", "deploy")):
        mod.AgentLoop(ds, name, handler=handler_for(name), filter_tags=[tag]).run(once=True)
    assert seen == {"writer": [ids["content"]], "coder": [ids["code"]], "ops": [ids["deploy"]]}


def test_stale_task_reaper_page_example(tmp_path: Path) -> None:
    """An agent that crashed mid-task: its task goes back to inbox/. dropsited
    sees the holder is dead and needs no timeout; 0.1.0 needs the 300 s to pass."""
    ws = tmp_path / "ws"
    ds = dropsited.DropSite(ws, durable=False)
    task_id = ds.submit(dropsited.TaskBuilder("orphan", "u").build())
    child = python_child("""
        import sys
        from dropsited import DropSite
        assert DropSite(sys.argv[1], durable=False).claim("crashy", sys.argv[2])
    """, str(ws), task_id)
    assert child.wait(30) == 0
    reaped = ds.reap_stale(timeout_seconds=300)
    print(f"Reaped {len(reaped)} stale tasks")
    assert reaped == [task_id]
    assert [t.id for t in ds.list_tasks("inbox")] == [task_id]


def test_task_chaining(mod, tmp_path: Path, capsys) -> None:
    ds = open_ws(mod, tmp_path / "ws")
    ds.submit(mod.TaskBuilder("Research", "larry").context({"topic": "owls"}).tag("research").build())

    def researcher(task):
        findings = f"facts about {task.context['topic']}"
        writer_task = (mod.TaskBuilder("Write article", "researcher")
                       .context({"research": findings}).assign("writer").tag("content").build())
        ds.submit(writer_task)
        return {"findings": findings}

    written = []
    mod.AgentLoop(ds, "researcher", handler=researcher, filter_tags=["research"]).run(once=True)
    mod.AgentLoop(ds, "writer", handler=lambda t: written.append(t.context["research"]) or {"ok": True},
                  filter_tags=["content"]).run(once=True)
    assert written == ["facts about owls"]
    assert sorted(t.title for t in ds.list_tasks("done")) == ["Research", "Write article"]
