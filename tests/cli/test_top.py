"""`dropsited top`: one frame (--once, --json) from a workspace set up by hand, and the
live view on a pseudo-terminal, left with q and with Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pty_terminal import Terminal

from dropsited import DropSite, TaskBuilder
from dropsited.cli import main

DROPSITED = Path(sys.executable).parent / "dropsited"


@pytest.fixture
def ds(tmp_path: Path) -> DropSite:
    """Two waiting, one held by an AgentLoop-style agent, two done, one failed, one daemon agent."""
    ds = DropSite(tmp_path / "ws", durable=False)
    for n in range(2):
        ds.submit(TaskBuilder(f"waiting {n}", "me").build())
    for n in range(2):
        ds.complete(ds.claim("coder", ds.submit(TaskBuilder(f"done {n}", "me").build())), {})
    ds.fail(ds.claim("coder", ds.submit(TaskBuilder("broken", "me").max_retries(0).build())), "x")
    ds.register_agent("coder", role="builder")
    ds.claim("coder", ds.submit(TaskBuilder("Summarise the report", "me").priority(1).build()))
    ds.write_agent_record("shouter", {"name": "shouter", "mode": "worker", "state": "running",
                                      "pids": [4242], "running": [], "tasks_done": 7,
                                      "tasks_failed": 1, "last_error": "exit status 3: boom"})
    return ds


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        env = {"PATH": os.environ.get("PATH", ""), "TERM": "xterm", "LANG": "C.UTF-8"}
        opened.append(Terminal([str(DROPSITED), *args], env))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def test_once_prints_one_frame(ds: DropSite) -> None:
    out = subprocess.run([DROPSITED, "top", ds.workspace, "--once"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout
    lines = out.stdout.splitlines()
    assert "(no daemon running)" in lines[0]
    assert lines[1].split() == ["queues", "inbox", "2", "active", "1", "done", "2", "failed", "1",
                                "blocked", "0", "feedback", "0", "quarantine", "0"]
    assert lines[2].split()[:6] == ["last", "60s", "done", "2", "failed", "1"]
    rows = {line.split()[0]: line for line in lines[5:]}
    assert "Summarise the report" in rows["coder"] and "builder" in rows["coder"]
    assert rows["shouter"].split()[:5] == ["shouter", "worker", "running", "7", "1"]
    assert "exit status 3: boom" in rows["shouter"]


def test_once_json(ds: DropSite) -> None:
    out = CliRunner().invoke(main, ["top", str(ds.workspace), "--once", "--json"])
    assert out.exit_code == 0, out.output
    frame = json.loads(out.output)
    assert frame["queues"]["inbox"] == 2 and frame["queues"]["active"] == 1
    assert frame["throughput"] == {"window_seconds": 60, "done": 2, "failed": 1}
    assert frame["daemon"] == {"running": False, "pid": None}
    coder = next(a for a in frame["agents"] if a["name"] == "coder")
    assert [t["title"] for t in coder["running"]] == ["Summarise the report"]


def test_throughput_leaves_out_older_tasks(ds: DropSite) -> None:
    old = time.time() - 600
    for path in (ds.workspace / "done").iterdir():
        data = json.loads(path.read_text())
        data["history"][-1]["at"] = "2000-01-01T00:00:00Z"
        path.write_text(json.dumps(data))
        os.utime(path, (old, old))
    frame = json.loads(CliRunner().invoke(main, ["top", str(ds.workspace), "--once",
                                                 "--json"]).output)
    assert frame["throughput"]["done"] == 0 and frame["queues"]["done"] == 2


def test_live_view_redraws_until_q(ds: DropSite, terminal) -> None:
    term = terminal("top", str(ds.workspace), "--interval", "0.2")
    term.wait_for(3, "queues ")  # three frames: it redraws
    assert term.seen.count("\x1b[H\x1b[2J") >= 3
    ds.submit(TaskBuilder("late arrival", "me").build())
    term.wait_for(1, "inbox 3")
    term.type("q")
    assert term.finish() == 0
    assert term.seen.endswith("\x1b[?25h\r\n")  # the cursor is given back


def test_live_view_leaves_on_ctrl_c(ds: DropSite, terminal) -> None:
    term = terminal("top", str(ds.workspace), "--interval", "5")
    term.wait_for(1, "(q to quit)")
    term.type("\x03")
    assert term.finish() == 0
    assert "Traceback" not in term.seen


def test_json_needs_once_and_bad_workspace_is_one_line(tmp_path: Path, ds: DropSite) -> None:
    out = subprocess.run([DROPSITED, "top", ds.workspace, "--json"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and out.stderr == "error: --json needs --once (a live view cannot be JSON)\n"
    out = subprocess.run([DROPSITED, "top", tmp_path, "--once"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "not a DropSite workspace" in out.stderr


def test_help_has_an_example() -> None:
    out = CliRunner().invoke(main, ["top", "--help"])
    assert out.exit_code == 0 and "dropsited top ./workspace --once" in out.output
