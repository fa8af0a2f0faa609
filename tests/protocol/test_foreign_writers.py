"""The bash and Node snippets of docs/PROTOCOL.md §11, run as written: the
task they drop is claimed by dropsited, and nothing half-written is seen."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dropsited import DropSite

from .conftest import REPO


def snippet(lang: str) -> str:
    text = (REPO / "docs" / "PROTOCOL.md").read_text()
    section = text[text.index("## 11."):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_bash_snippet(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "workspace", durable=False)
    subprocess.run(["bash", "-e", "-c", snippet("bash")], cwd=tmp_path, check=True, timeout=30)
    task = ds.claim_next("w", ["code"])
    assert task.title == "Build auth API" and task.context == {"language": "python"}
    assert task.id.startswith("job-") and task.created_by == "bash"
    ds.complete(task, {})
    assert [p.name for p in (tmp_path / "workspace" / "inbox").iterdir()] == []


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_snippet(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "workspace", durable=False)
    subprocess.run(["node", "-e", snippet("js")], cwd=tmp_path, check=True, timeout=30)
    task = ds.claim_next("w", ["analysis"])
    assert task.title == "Summarise report" and len(task.id) == 32
    assert [p.name for p in (tmp_path / "workspace" / "inbox").iterdir()] == []
