"""Readiness, health checks, start order and the soft timeout (issue 14 part 5) with
real processes: a service that becomes ready through its `ready_check`, a worker that
starts `after` it and signals `{"ready": true}`, a worker that never does (FATAL
through the restart policy), a service failing its health check, and an exec agent
that saves partial work on `timeout_signal`. The timing rules themselves are tested
with the fake clock in test_readiness_in_process.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import agent, daemon_session, py, wait_until

FAST = {"backoff": {"initial": "0.05s", "max": "0.1s"}, "give_up": {"failures": 2, "window": "60s"}}

DB = """
import os, signal, sys, time
here = sys.argv[1]
def bye(*_):
    open(here + '/db-stopped', 'w').write(repr(time.monotonic()))
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
time.sleep(0.3)
open(here + '/db-up', 'w').close()
while True:
    time.sleep(1)
"""
WORKER = """
import json, os, signal, sys, time
here = sys.argv[1]
def bye(*_):
    open(here + '/w-stopped', 'w').write(repr(time.monotonic()))
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
db_was_up = os.path.exists(here + '/db-up')
print('warming up', flush=True)          # not the ready line: logged, ignored
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    task = json.loads(line)
    print(json.dumps({"id": task["id"], "db_was_up": db_was_up}), flush=True)
"""
SLOW = """
trap 'echo partial > "$0.partial"; exit 3' USR1
sleep 30 & wait
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ready")
    slow = tmp / "slow.sh"
    slow.write_text(SLOW)
    with daemon_session(tmp) as make:
        d = make([
            agent("db", py(DB) + [str(tmp)], mode="service",
                  ready_check={"command": ["test", "-f", str(tmp / "db-up")],
                               "interval": "100ms"}),
            agent("w", py(WORKER) + [str(tmp)], mode="worker", ready="line", after=["db"],
                  tags=["w"]),
            agent("mute", py("import time\nwhile True: time.sleep(1)"), mode="worker",
                  ready="line", start_timeout="0.4s", stop_grace="0.2s", tags=["mute"], **FAST),
            agent("sick", py("import time\nwhile True: time.sleep(1)"), mode="service",
                  start_seconds=0, stop_grace="0.2s",
                  health_check={"command": "exit 1", "interval": "100ms", "failures": 2}, **FAST),
            agent("gated", ["cat"], tags=["gated"],
                  ready_check={"command": ["test", "-f", str(tmp / "gate")], "interval": "100ms"}),
            agent("slow", ["bash", str(slow)], timeout="1.5s", timeout_signal="USR1",
                  timeout_grace="1s", tags=["slow"]),
        ])
        d.tmp = tmp
        yield d


def test_a_ready_check_and_a_ready_line_gate_running_and_after_orders_the_start(daemon) -> None:
    w = daemon.wait_agent("w", lambda r: r["state"] == "RUNNING", 15, "worker w RUNNING")
    assert daemon.agent_record("db")["state"] == "RUNNING"
    task_id = daemon.drop("hello", tags=("w",))
    done = daemon.wait_in(task_id, "done")
    assert done["result"] == {"db_was_up": True}  # w was spawned only once db was ready
    assert "[stdout before the ready line] warming up" in daemon.log_text("w")
    assert w["restarts"] == 0


def test_a_worker_that_never_says_ready_fails_its_starts_and_goes_fatal(daemon) -> None:
    record = daemon.wait_agent("mute", lambda r: r["state"] == "FATAL", 15, "mute FATAL")
    assert "not ready within start_timeout (0.4s)" in record["last_error"]
    task_id = daemon.drop("never taken", tags=("mute",))
    time.sleep(0.3)  # a RUNNING-only worker must not have taken it meanwhile
    assert daemon.folder_of(task_id) == "inbox"


def test_a_failing_health_check_restarts_the_agent_until_fatal(daemon) -> None:
    record = daemon.wait_agent("sick", lambda r: r["state"] == "FATAL", 15, "sick FATAL")
    assert "health check failed 2 times in a row: exit status 1" in record["last_error"]
    assert record["restarts"] == 1  # give_up.failures 2: one restart, then FATAL
    assert "health check failed (1 of 2 in a row)" in daemon.stderr()


def test_an_exec_agent_takes_tasks_once_its_ready_check_passes(daemon) -> None:
    task_id = daemon.drop("gated", tags=("gated",))
    daemon.wait_agent("gated", lambda r: r["state"] == "STARTING", 10, "gated STARTING")
    assert daemon.folder_of(task_id) == "inbox"
    (daemon.tmp / "gate").touch()
    daemon.wait_in(task_id, "done")
    daemon.wait_agent("gated", lambda r: r["state"] == "RUNNING", 10, "gated RUNNING")


def test_the_soft_timeout_signal_comes_before_the_kill(daemon) -> None:
    task_id = daemon.drop("take your time", tags=("slow",))
    wait_until(lambda: Path(str(daemon.tmp / "slow.sh") + ".partial").exists(), 10,
               "the agent's partial work", daemon=daemon)
    task = wait_until(lambda: _attempt_of(daemon, task_id), 10, "the attempt recorded")
    assert task["exit_code"] == 3  # the agent's own exit after saving, not SIGKILL
    assert "soft timeout: SIGUSR1" in daemon.stderr()


def _attempt_of(daemon, task_id: str) -> dict | None:
    folder = daemon.folder_of(task_id)
    if folder not in ("inbox", "failed"):
        return None
    data = json.loads((daemon.ws / folder / f"{task_id}.json").read_text())
    entries = [h for h in data.get("history", []) if "exit_code" in h or "signal" in h]
    return entries[-1] if entries else None


def test_at_shutdown_an_agent_stops_before_those_it_starts_after(daemon) -> None:
    daemon.wait_agent("w", lambda r: r["state"] == "RUNNING", 15, "worker w RUNNING")
    assert daemon.stop() == 0
    w_stopped = float((daemon.tmp / "w-stopped").read_text())
    db_stopped = float((daemon.tmp / "db-stopped").read_text())
    assert w_stopped < db_stopped
