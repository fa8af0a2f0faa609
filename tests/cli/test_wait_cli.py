"""`dropsited wait` and `dropsited drop --wait` against a real daemon and its exec agent:
the exit statuses a shell script relies on (0 done, 1 failed, 2 bad input, 124 timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import agent, py

DROPSITED = str(Path(sys.executable).parent / "dropsited")

# Echoes the title back as the result; a title "fail" fails, "ask" asks a human first.
AGENT = py("""
import json, sys
task = json.load(sys.stdin)
if task["title"] == "fail":
    sys.exit(3)
if task["title"] == "ask" and "_feedback_response" not in task["context"]:
    print(json.dumps({"_dropsite": {"status": "feedback", "question": "go?"}}))
    sys.exit(0)
print(json.dumps({"echo": task["title"], "answer": task["context"].get("_feedback_response")}))
""")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([DROPSITED, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_drop_wait_json_is_a_function_call(run_daemon) -> None:
    d = run_daemon([agent("echo", AGENT)])
    done = run("drop", d.ws, "--from", "me", "--title", "hello", "--wait", "--timeout", "30",
               "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"echo": "hello", "answer": None}

    failed = run("drop", d.ws, "--from", "me", "--title", "fail", "--max-retries", "0",
                 "--wait", "--timeout", "30")
    assert failed.returncode == 1, failed.stderr
    task_id, folder, error = failed.stdout.split(maxsplit=2)
    assert folder == "failed" and error.startswith("error:")
    assert d.stop() == 0


def test_wait_for_several_and_until_feedback(run_daemon) -> None:
    d = run_daemon([agent("echo", AGENT)])
    first, second = d.drop("one"), d.drop("two")
    both = run("wait", d.ws, first, second, "--timeout", "30")
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [f'{first}  done  {{"echo": "one", "answer": null}}',
                                        f'{second}  done  {{"echo": "two", "answer": null}}']

    asking = d.drop("ask")
    asked = run("wait", d.ws, asking, "--until", "feedback", "--timeout", "30")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == f"{asking}  feedback  question: go?"
    assert run("feedback", d.ws, asking, "yes").returncode == 0
    answered = run("wait", d.ws, asking, "--json", "--timeout", "30")
    assert json.loads(answered.stdout)["result"] == {"echo": "ask", "answer": "yes"}
    assert d.stop() == 0


def test_timeout_and_bad_input(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run("init", ws).returncode == 0
    done = run("drop", ws, "--from", "me", "--title", "finished", "-q").stdout.strip()
    assert run("claim", ws, done).returncode == 0
    assert run("complete", ws, done, "--result", '{"ok": true}').returncode == 0
    waiting = run("drop", ws, "--from", "me", "--title", "nobody takes it", "-q").stdout.strip()

    timed_out = run("wait", ws, done, waiting, "--timeout", "0.3")
    assert timed_out.returncode == 124
    assert timed_out.stdout.strip() == f'{done}  done  {{"ok": true}}'
    assert timed_out.stderr.strip() == (f"error: timed out after 0.3s; still waiting for "
                                        f"{waiting} (in inbox/)")

    for args, message in [
        ((ws, "../x"), "error: task id '../x' looks like a path"),
        ((ws, "nosuchtask"), "error: no task nosuchtask in"),
        ((ws, waiting, "--until", "active"), "error: --until: 'active' is not one of"),
        ((tmp_path / "nowhere", waiting), "no such directory"),
        ((ws, waiting, "--timeout", "-1"), "Invalid value for '--timeout'"),
    ]:
        bad = run("wait", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr and "Traceback" not in bad.stderr
    lone = run("drop", ws, "--from", "me", "--title", "t", "--timeout", "5")
    assert lone.returncode == 2 and lone.stderr.strip() == "error: --timeout needs --wait"


def test_the_workspace_may_come_from_the_environment(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run("init", ws).returncode == 0
    ids = [run("drop", ws, "--from", "me", "--title", t, "-q").stdout.strip() for t in "ab"]
    env = {**os.environ, "DROPSITE_WORKSPACE": str(ws)}
    waited = subprocess.run([DROPSITED, "wait", *ids, "--timeout", "0.2"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert waited.returncode == 124
    assert waited.stderr.strip().endswith(f"{ids[0]} (in inbox/), {ids[1]} (in inbox/)")
