"""examples/polyglot under agents.example.yaml with --demo (what `make up` runs): the bash,
Node.js and Python agents finish their tasks, and `dropsited review` answers the human steps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DROPSITED, EXAMPLES

from dropsited import DropSite

MANIFEST = EXAMPLES.parent / "agents.example.yaml"


def _by_title(ds: DropSite, folder: str) -> dict:
    return {t.title: t for t in ds.list_tasks(folder)}


@pytest.mark.skipif(shutil.which("node") is None, reason="the shouter agent needs node")
def test_make_up_demo_runs_every_mode(tmp_path: Path, daemon, wait_until) -> None:
    ws = tmp_path / "ws"
    running = daemon(MANIFEST, ws, "--demo")
    ds = DropSite(ws)
    wait_until(lambda: len(ds.list_tasks("done")) == 3 and ds.stats()["feedback"] == 1,
               15, "the three agent tasks and the feedback request", daemon=running)
    done = _by_title(ds, "done")
    assert done["Count the words of a sentence"].result == {"words": 7, "agent": "word-counter"}
    assert done["Shout a greeting"].result == {"shouted": "HELLO FROM A NODE WORKER"}
    text = "Folders of JSON files are a fine queue for agents."
    assert done["Summarise a draft"].result == {"summary": text[:-1], "chars": len(text),
                                                "approval": None}

    # The two human steps, answered through review's prompts (stdin need not be a tty).
    review = subprocess.run([DROPSITED, "review", ws], input="1\nyes, buy\n", text=True,
                            capture_output=True, timeout=30)
    assert review.returncode == 0, review.stderr
    assert "Publish this summary?" in review.stdout and "Approve a trade" in review.stdout
    assert "Reviewed: 2 answered, 0 skipped." in review.stdout

    wait_until(lambda: len(ds.list_tasks("done")) == 5, 15, "the published summary",
               daemon=running)
    assert running.stop() == 0
    done = _by_title(ds, "done")
    assert done["Publish a summary"].result == {
        "summary": "Humans answer from the terminal", "chars": 45, "approval": "approve"}
    assert done["Approve a trade"].result == {"answer": "yes, buy"}
