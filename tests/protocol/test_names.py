"""Ids and agent names end up in file names: every API that takes one refuses
anything that could leave its folder or break the holder encoding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropsited import AgentLoop, DropSite, InvalidName, Task, TaskBuilder
from dropsited.protocol.names import check_agent_name, check_task_id, new_task_id

BAD = ["", "a/b", "../x", "..", "a..b", "x\x00y", "a" * 65, "/abs", "a\\b", "a~b", ".hidden"]


@pytest.fixture
def ds(ws: Path) -> DropSite:
    d = DropSite(ws, durable=False)
    return d


def _calls(ds: DropSite, bad: str):
    held = Task(id="ok", title="t", created_by="me")
    forged = Task.__new__(Task)
    forged.__dict__.update(held.__dict__, id=bad)
    return {
        "claim agent": lambda: ds.claim(bad, "ok"),
        "claim id": lambda: ds.claim("w", bad),
        "claim_next": lambda: ds.claim_next(bad),
        "respond_feedback": lambda: ds.respond_feedback(bad, "x"),
        "unblock": lambda: ds.unblock(bad),
        "retry": lambda: ds.retry(bad),
        "get_task": lambda: ds.get_task(bad),
        "locate": lambda: ds.locate(bad),
        "register_agent": lambda: ds.register_agent(bad),
        "heartbeat": lambda: ds.heartbeat(bad),
        "AgentLoop": lambda: AgentLoop(ds, bad, lambda t: {}, verbose=False),
        "assign": lambda: TaskBuilder("t", "me").assign(bad),
        "with_id": lambda: TaskBuilder("t", "me").with_id(bad),
        "parent": lambda: TaskBuilder("t", "me").parent(bad),
        "depends_on": lambda: TaskBuilder("t", "me").depends_on(bad),
        "submit": lambda: ds.submit(forged),
        "complete": lambda: ds.complete(forged, {}),
        "fail": lambda: ds.fail(forged, "e"),
        "block": lambda: ds.block(forged, "r"),
        "request_feedback": lambda: ds.request_feedback(forged, {}),
        "release": lambda: ds.release(forged),
    }


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_every_api_refuses_bad_names(ds: DropSite, ws: Path, bad: str) -> None:
    before = sorted(str(p.relative_to(ws.parent)) for p in ws.parent.rglob("*"))
    for label, call in _calls(ds, bad).items():
        if bad in (".hidden",) and label in ("claim agent", "claim_next", "register_agent",
                                             "heartbeat", "AgentLoop", "assign"):
            continue  # see test_agent_names_may_contain_dots
        with pytest.raises(InvalidName):
            call()
            pytest.fail(f"{label} accepted {bad!r}")
    after = sorted(str(p.relative_to(ws.parent)) for p in ws.parent.rglob("*"))
    assert after == before  # nothing written anywhere


def test_agent_names_may_contain_dots_but_not_start_with_one() -> None:
    assert check_agent_name("bot.v2@host+1") == "bot.v2@host+1"
    with pytest.raises(InvalidName):
        check_agent_name(".hidden")


def test_limits() -> None:
    assert check_task_id("a" * 64) and check_agent_name("b" * 64)
    for bad in ("a" * 65, ""):
        with pytest.raises(InvalidName):
            check_task_id(bad)
        with pytest.raises(InvalidName):
            check_agent_name(bad)
    with pytest.raises(InvalidName):
        check_task_id(None)  # type: ignore[arg-type]


def test_new_ids_are_32_hex_and_time_ordered() -> None:
    ids = [new_task_id() for _ in range(5000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_task_file_with_a_path_id_is_not_a_task(ws: Path) -> None:
    ds = DropSite(ws, durable=False, corrupt_grace=0)
    (ws / "inbox" / "x.json").write_text('{"id": "../../x", "title": "t"}')
    assert ds.claim_next("w") is None
    assert os.listdir(ws / "inbox") == []
    assert "x.json" in os.listdir(ws / "quarantine")
