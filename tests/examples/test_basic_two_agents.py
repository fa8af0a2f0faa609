"""examples/basic-two-agents: the AgentLoop pipeline and the bash agents under
`dropsited up` write the same article, and the chain researcher -> writer is recorded."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from conftest import EXAMPLES

from dropsited import DropSite

EXAMPLE = EXAMPLES / "basic-two-agents"


def _python_pipeline(tmp_path: Path, topic: str) -> Path:
    pipeline = runpy.run_path(str(EXAMPLE / "pipeline.py"))
    out = tmp_path / "python-out"
    done = pipeline["run"](tmp_path / "python-ws", topic, out, timeout=15)
    assert done.result == {"article": str(out.resolve() / "article.md")}
    return out / "article.md"


def test_agentloops_and_bash_agents_write_the_same_article(tmp_path: Path, daemon, wait_until,
                                                           dropsited) -> None:
    from_python = _python_pipeline(tmp_path, "honey bees")

    ws, out = tmp_path / "ws", tmp_path / "bash-out"
    running = daemon(EXAMPLE / "agents.yaml", ws)
    research_id = dropsited(
        "drop", ws, "--from", "me", "--to", "researcher", "--type", "research", "-q",
        "--title", "Research honey bees",
        "--payload", json.dumps({"topic": "honey bees", "output_dir": str(out)})).strip()
    article = out / "article.md"
    wait_until(lambda: article.exists() and len(DropSite(ws).list_tasks("done")) == 2,
               15, "the writer's article", daemon=running)
    assert running.stop() == 0

    assert article.read_text() == from_python.read_text()
    assert article.read_text().startswith("# Honey bees\n\n## Findings\n\n- A colony has one queen")

    ds = DropSite(ws)
    research = ds.get_task(research_id)
    writer_task = ds.get_task(research.result["writer_task"])
    assert writer_task.parent_id == research_id and writer_task.assigned_to == "writer"
    assert research.result["findings"] == writer_task.context["findings"]
    assert writer_task.result == {"article": str(article)}
    chain = dropsited("show", ws, writer_task.id)
    assert f"  {research_id} 'Research honey bees' [done]" in chain
    assert f"  └─ {writer_task.id} 'Write article: honey bees' [done]  <- this task" in chain


def test_unknown_topic_ends_in_failed(tmp_path: Path) -> None:
    pipeline = runpy.run_path(str(EXAMPLE / "pipeline.py"))
    with pytest.raises(RuntimeError, match="no notes on 'unicorns' in knowledge.txt"):
        pipeline["run"](tmp_path / "ws", "unicorns", tmp_path / "out", timeout=10, max_retries=0)
    assert DropSite(tmp_path / "ws").stats()["failed"] == 1
    assert not (tmp_path / "out").exists()
