"""examples/multi-agent-pipeline: planner -> three section writers -> editor, every agent
calling the stub OpenAI-compatible endpoint over HTTP (127.0.0.1 only, never the network)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

from dropsited import DropSite
from dropsited.protocol.task import parse_iso

EXAMPLE = EXAMPLES / "multi-agent-pipeline"
SHIPPED_URL = "LLM_BASE_URL: http://127.0.0.1:8011"
SHIPPED_KEY = "# LLM_API_KEY: ${LLM_API_KEY}"


@pytest.fixture
def stub(tmp_path: Path):
    """stub_llm.py as the README runs it, on a free port; (url, request log)."""
    log = tmp_path / "llm-requests.jsonl"
    proc = subprocess.Popen([sys.executable, EXAMPLE / "stub_llm.py", "--port", "0", "--log", log],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "stub_llm.py did not start"
        line = proc.stdout.readline()
        assert line.startswith("stub LLM listening on http://127.0.0.1:"), line
        yield line.split()[-1], log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _example_copy(tmp_path: Path, url: str, api_key: str | None = None) -> Path:
    """The example as shipped, with only the endpoint (and maybe a key) changed."""
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("workspace", "out",
                                                                  "__pycache__"))
    manifest = copy / "agents.yaml"
    text = manifest.read_text()
    assert SHIPPED_URL in text and SHIPPED_KEY in text
    text = text.replace(SHIPPED_URL, f"LLM_BASE_URL: {url}")
    if api_key:
        text = text.replace(SHIPPED_KEY, f"LLM_API_KEY: {api_key}")
    manifest.write_text(text)
    return manifest


def test_plan_fan_out_fan_in_through_the_stub(tmp_path: Path, stub, daemon, wait_until,
                                              dropsited) -> None:
    url, requests = stub
    ws, out = tmp_path / "ws", tmp_path / "out"
    running = daemon(_example_copy(tmp_path, url, api_key="sk-test"), ws)
    plan_id = dropsited("drop", ws, "--from", "me", "--type", "plan", "-q",
                        "--title", "Report: tide pools",
                        "--payload", json.dumps({"topic": "tide pools",
                                                 "output_dir": str(out)})).strip()
    report = out / "report.md"
    wait_until(report.exists, 20, "report.md", daemon=running)
    assert running.stop() == 0

    ds = DropSite(ws)
    plan = ds.get_task(plan_id).result
    assert plan["sections"] == ["Origins of tide pools", "Tide pools today",
                                "What comes next"]
    editor = ds.get_task(plan["editor_task"])
    assert editor.depends_on == plan["section_tasks"] and editor.parent_id == plan_id
    finished = {e["status"]: parse_iso(e["at"]) for e in editor.history}
    for section in plan["section_tasks"]:
        done_at = next(parse_iso(e["at"]) for e in ds.get_task(section).history
                       if e["status"] == "done")
        # fan-in: the editor started after every section (a claim's time has
        # millisecond resolution, it is in the claimed file's name)
        assert done_at <= finished["active"] + 0.001

    text = report.read_text()
    assert text.startswith("# tide pools\n\n_[stub-model] A report in 3 sections._\n\n")
    assert text.index("## Origins of tide pools") < text.index("## What comes next")
    assert '[stub-model] A paragraph answering: Write the section "What comes next"' in text

    calls = [json.loads(line) for line in requests.read_text().splitlines()]
    assert len(calls) == 5  # planner, three sections, editor
    assert {c["model"] for c in calls} == {"stub-model"}
    assert {c["path"] for c in calls} == {"/v1/chat/completions"}
    assert {c["authorization"] for c in calls} == {"Bearer sk-test"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_endpoint_down_means_later_not_failed(tmp_path: Path, daemon, wait_until,
                                              dropsited) -> None:
    ws = tmp_path / "ws"
    running = daemon(_example_copy(tmp_path, f"http://127.0.0.1:{_closed_port()}"), ws)
    plan_id = dropsited("drop", ws, "--from", "me", "--type", "plan", "-q", "--title", "Report",
                        "--payload", '{"topic": "x", "output_dir": "/nonexistent"}').strip()
    ds = DropSite(ws)

    def tempfailed():
        task = ds.get_task(plan_id)
        return task and any(e.get("tempfail") for e in task.history)

    wait_until(tempfailed, 15, "the planner to exit 75", daemon=running)
    assert running.stop() == 0
    task = ds.get_task(plan_id)
    assert ds.locate(plan_id).folder == "inbox" and task.retry_count == 0
    entry = next(e for e in task.history if e.get("tempfail"))
    assert "LLM unavailable, later" in entry["error"]
