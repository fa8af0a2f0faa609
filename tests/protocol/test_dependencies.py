"""TaskBuilder.depends_on: fan-out and fan-in, the hand-out rule, a failed dependency
blocking its dependents, and `dropsited show` drawing the chain."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dropsited import DropSite, TaskBuilder
from dropsited.cli import main


def _drain(ds: DropSite, agent: str = "w") -> list[str]:
    """Claim and complete everything handed out now; the titles in hand-out order."""
    titles = []
    while (task := ds.claim_next(agent)) is not None:
        titles.append(task.title)
        ds.complete(task, {"by": agent})
    return titles


def test_fan_out_then_fan_in(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False)
    root = ds.submit(TaskBuilder("fetch", "me").build())
    parts = [ds.submit(TaskBuilder(f"part {n}", "me").depends_on(root).build()) for n in (1, 2, 3)]
    ds.submit(TaskBuilder("merge", "me").depends_on(*parts).build())

    assert _drain(ds) == ["fetch", "part 1", "part 2", "part 3", "merge"]
    assert ds.stats()["done"] == 5


def test_not_handed_out_until_every_dependency_is_done(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False)
    a = ds.submit(TaskBuilder("a", "me").priority(9).build())
    b = ds.submit(TaskBuilder("b", "me").priority(9).build())
    joined = ds.submit(TaskBuilder("joined", "me").priority(1).depends_on(a, b).build())

    first = ds.claim_next("w")
    assert first is not None and first.id == a  # the urgent task waits, the others go first
    ds.complete(first, {})
    held_b = ds.claim_next("w")
    assert held_b is not None and held_b.id == b
    assert ds.claim_next("w") is None  # b is still active, not done
    assert ds.locate(joined).folder == "inbox"
    ds.complete(held_b, {})
    last = ds.claim_next("w")
    assert last is not None and last.id == joined


def test_failed_dependency_blocks_the_dependent_with_the_reason(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False)
    dep = ds.submit(TaskBuilder("flaky", "me").max_retries(0).build())
    child = ds.submit(TaskBuilder("needs flaky", "me").depends_on(dep).build())
    other = ds.submit(TaskBuilder("independent", "me").priority(9).build())

    held = ds.claim_next("w")
    assert held is not None and held.id == dep
    assert ds.fail(held, "boom") == "failed"

    after = ds.claim_next("w")
    assert after is not None and after.id == other  # the blocked one is skipped
    assert ds.locate(child).folder == "blocked"
    blocked = ds.get_task(child)
    assert blocked.history[-1]["status"] == "blocked"
    assert blocked.history[-1]["reason"] == f"dependency {dep} failed"


def test_unblocked_dependent_runs_once_the_dependency_is_retried_and_done(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False)
    dep = ds.submit(TaskBuilder("flaky", "me").max_retries(0).build())
    child = ds.submit(TaskBuilder("after", "me").depends_on(dep).build())
    ds.fail(ds.claim_next("w"), "boom")
    assert ds.claim_next("w") is None
    ds.retry(dep)
    ds.unblock(child, note="dependency fixed")
    assert _drain(ds) == ["flaky", "after"]


def test_depends_on_is_stored_in_the_context(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False)
    a = ds.submit(TaskBuilder("a", "me").build())
    b = ds.submit(TaskBuilder("b", "me").context({"k": 1}).depends_on(a).build())
    data = json.loads((tmp_path / "ws" / "inbox" / f"{b}.json").read_text())
    assert data["context"] == {"k": 1, "_depends_on": [a]}


def test_show_prints_parents_children_and_dependencies(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    root = ds.submit(TaskBuilder("research topic", "me").build())
    mid = ds.submit(TaskBuilder("write article", "researcher").parent(root).build())
    other = ds.submit(TaskBuilder("fetch images", "me").build())
    leaf = ds.submit(TaskBuilder("edit article", "writer").parent(mid).depends_on(other).build())
    ds.complete(ds.claim("w", root), {})

    out = CliRunner().invoke(main, ["show", str(ws), mid])
    assert out.exit_code == 0, out.output
    chain = out.output.split("chain\n", 1)[1].split("history\n", 1)[0].splitlines()
    assert chain == [
        f"  {root} 'research topic' [done]",
        f"  └─ {mid} 'write article' [inbox]  <- this task",
        f"     └─ {leaf} 'edit article' [inbox]",
    ]

    out = CliRunner().invoke(main, ["show", str(ws), leaf])
    assert out.exit_code == 0, out.output
    assert f"     └─ {leaf} 'edit article' [inbox]  <- this task" in out.output
    assert f"        └─ needs {other} 'fetch images' [inbox]" in out.output

    out = CliRunner().invoke(main, ["show", str(ws), other])
    assert f"  {other} 'fetch images' [inbox]  <- this task" in out.output
    assert f"  └─ needed by {leaf} 'edit article' [inbox]" in out.output
