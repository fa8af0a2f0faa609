"""SIGKILL anywhere (issue 3 §5, §9): an agent, a worker, the daemon itself, an external
AgentLoop. Tasks are reaped and finished by another attempt; nothing is lost, nothing
is in two folders, no agent outlives the daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from harness import agent, gone, processes_of, wait_until, write_script

from dropsited.daemon.containment.death_watch import PROGRAM_NAME

# First attempt of each task: write the pid where the test finds it, then hang.
# Later attempts: succeed at once.
HANG_ONCE = """
import os, sys, time
marks = os.environ["MARKS"]
pidfile = os.path.join(marks, os.environ["DROPSITE_TASK_ID"] + ".pid")
if os.path.exists(pidfile):
    print('{"attempt": "later"}')
    sys.exit(0)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
time.sleep(60)
"""
WORKER_HANG_ONCE = """
import json, os, sys, time
marks = os.environ["MARKS"]
for line in sys.stdin:
    task = json.loads(line)
    pidfile = os.path.join(marks, task["id"] + ".pid")
    if not os.path.exists(pidfile):
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(60)
    print(json.dumps({"id": task["id"], "status": "done", "result": {"pid": os.getpid()}}),
          flush=True)
"""
GRANDCHILD = """
import os, sys, time
if os.fork() == 0:
    os.setsid()  # out of the agent's session: pdeathsig and group signals miss it
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(1)
"""
EXTERNAL_LOOP = """
import os, sys, time
from dropsited import DropSite, AgentLoop

def handle(task):
    open(sys.argv[2], "w").write(task.id)
    time.sleep(60)

AgentLoop(DropSite(sys.argv[1]), "external", handle, poll_interval=0.05, verbose=False).run()
"""



@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


def pid_of_attempt(marks: Path, task_id: str, timeout: float = 10.0) -> int:
    path = marks / f"{task_id}.pid"
    wait_until(path.exists, timeout, f"first attempt of {task_id} running")
    return int(path.read_text())


def test_sigkill_of_an_exec_agent_mid_task_is_a_failed_attempt_then_done(
        run_daemon, marks: Path) -> None:
    d = run_daemon([agent("hang", [sys.executable, "-c", HANG_ONCE], env={"MARKS": str(marks)})])
    task_id = d.drop(to="hang")
    os.kill(pid_of_attempt(marks, task_id), signal.SIGKILL)
    task = d.wait_in(task_id, "done")
    assert task["result"] == {"attempt": "later"}
    assert task["retry_count"] == 1
    retry = next(e for e in task["history"] if e["status"] == "retry")
    assert retry["signal"] == "SIGKILL"
    assert d.stop() == 0


def test_sigkill_of_a_worker_mid_task_restarts_it_and_the_task_is_done(
        run_daemon, marks: Path) -> None:
    d = run_daemon([agent("worker", [sys.executable, "-c", WORKER_HANG_ONCE], mode="worker",
                          env={"MARKS": str(marks)}, start_seconds="0.1s",
                          backoff={"initial": "0.05s", "max": "0.1s"})])
    task_id = d.drop(to="worker")
    first = pid_of_attempt(marks, task_id)
    os.kill(first, signal.SIGKILL)
    task = d.wait_in(task_id, "done")
    assert task["result"]["pid"] != first
    assert task["retry_count"] == 1
    assert "worker died mid-task" in task["history"][-3]["error"]
    d.wait_agent("worker", lambda r: r["restarts"] == 1 and r["state"] in ("STARTING", "RUNNING"),
                 what="worker restarted once")
    assert d.stop() == 0


def test_sigkill_of_the_daemon_mid_task_then_restart_loses_nothing(
        run_daemon, marks: Path, tmp_path: Path) -> None:
    agents = [agent("hang", [sys.executable, "-c", HANG_ONCE], env={"MARKS": str(marks)},
                    concurrency=3),
              agent("worker", [sys.executable, "-c", WORKER_HANG_ONCE], mode="worker",
                    env={"MARKS": str(marks)}, start_seconds="0.1s"),
              agent("quick", ["/bin/echo", "quick"])]
    d = run_daemon(agents)
    running = [d.drop(f"exec {i}", to="hang") for i in range(3)] + [d.drop("w", to="worker")]
    agent_pids = [pid_of_attempt(marks, task_id) for task_id in running]
    d.proc.kill()
    d.proc.wait(timeout=5)
    # the death watch (exec agents) and pdeathsig: every agent dies with the daemon
    wait_until(lambda: all(gone(p) for p in agent_pids), 3, "agents gone with the daemon")
    assert not [p for p in processes_of(tmp_path) if p.pid in agent_pids]
    queued = [d.drop(f"while down {i}", to="quick") for i in range(3)]
    for task_id in running + queued:
        assert len(d.folders_holding(task_id)) == 1
    d.start()
    for task_id in running:
        task = d.wait_in(task_id, "done", timeout=10)
        assert task["retry_count"] == 1, task["history"]  # the reap at start counts as an attempt
        assert task["result"]["attempt" if "exec" in task["title"] else "pid"]
    for task_id in queued:
        assert d.wait_in(task_id, "done")["result"] == {"output": "quick"}
    for task_id in running + queued:
        assert d.folders_holding(task_id) == ["done"]
    assert d.stop() == 0


def test_an_external_agentloop_killed_mid_task_has_its_task_back_within_seconds(
        run_daemon, tmp_path: Path) -> None:
    d = run_daemon([agent("local", ["/bin/echo", "local"])])
    script = write_script(tmp_path / "external.py", EXTERNAL_LOOP)
    marker = tmp_path / "external.took"
    ext = subprocess.Popen([sys.executable, str(script), str(d.ws), str(marker)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        task_id = d.drop(to="external", max_retries=3)
        wait_until(marker.exists, 10, "external AgentLoop took the task")
        assert d.folder_of(task_id) == "active"
        ext.kill()
        ext.wait(timeout=5)
        killed_at = time.monotonic()
        task = d.wait_in(task_id, "inbox", timeout=5)
        assert time.monotonic() - killed_at < 2.5
        assert task["retry_count"] == 1
        assert task["history"][-1].get("reason") == "holder_dead"
        assert d.folders_holding(task_id) == ["inbox"]
    finally:
        if ext.poll() is None:
            ext.kill()
            ext.wait()
    assert d.stop() == 0


def death_watch_of(daemon: subprocess.Popen) -> psutil.Process:
    """The daemon's death watch: its child named dropsited-death-watch."""
    def find() -> psutil.Process | None:
        for child in psutil.Process(daemon.pid).children():
            with contextlib.suppress(psutil.Error):
                if PROGRAM_NAME in child.cmdline():
                    return child
        return None
    wait_until(lambda: find() is not None, 5, "death watch running")
    return find()


def daemon_with_escaped_grandchild(run_daemon, tmp_path: Path) -> tuple:
    """A daemon whose service agent forked a grandchild that left its session."""
    pidfile = tmp_path / "grandchild.pid"
    d = run_daemon([agent("forker", [sys.executable, "-c", GRANDCHILD, str(pidfile)],
                          mode="service")])
    wait_until(pidfile.exists, 5, "grandchild started")
    return d, pidfile, int(pidfile.read_text())


def test_a_sigkilled_daemon_takes_grandchildren_that_left_the_session_with_it(
        run_daemon, tmp_path: Path) -> None:
    """PDEATHSIG would reach only the agent itself; the death watch kills every process
    carrying the daemon's marker, within a second of the daemon's death."""
    d, pidfile, grandchild = daemon_with_escaped_grandchild(run_daemon, tmp_path)
    watch = death_watch_of(d.proc)
    d.proc.kill()
    d.proc.wait(timeout=5)
    wait_until(lambda: gone(grandchild), 3, "grandchild gone with the daemon")
    wait_until(lambda: not watch.is_running(), 3, "death watch exited")
    assert "death watch SIGKILLed" in d.stderr()
    assert not processes_of(tmp_path)


def test_a_restart_stops_what_a_daemon_killed_with_its_death_watch_left(
        run_daemon, tmp_path: Path) -> None:
    """With the watch SIGKILLed too, the grandchild survives; the next daemon on the
    workspace stops it (issue 3 section 5)."""
    d, pidfile, grandchild = daemon_with_escaped_grandchild(run_daemon, tmp_path)
    watch = death_watch_of(d.proc)
    d.proc.send_signal(signal.SIGSTOP)  # so that it cannot start a new watch in between
    watch.kill()
    wait_until(lambda: gone(watch.pid), 5, "watch dead (a zombie of the stopped daemon)")
    d.proc.kill()
    d.proc.wait(timeout=5)
    time.sleep(0.5)
    assert not gone(grandchild)
    pidfile.unlink()
    d.start()
    wait_until(lambda: gone(grandchild), 3, "orphan of the previous daemon stopped")
    assert "left by a previous daemon" in d.stderr()
    assert d.stop() == 0


def test_a_killed_death_watch_is_replaced_and_exec_agents_still_die_with_the_daemon(
        run_daemon, marks: Path, tmp_path: Path) -> None:
    d = run_daemon([agent("hang", [sys.executable, "-c", HANG_ONCE], env={"MARKS": str(marks)},
                          concurrency=2)])
    first = death_watch_of(d.proc)
    first.kill()
    wait_until(lambda: "death watch" in d.stderr() and "starting a new one" in d.stderr(),
               5, "daemon noticed its death watch died")
    second = death_watch_of(d.proc)
    assert second.pid != first.pid
    running = [d.drop(f"exec {i}", to="hang") for i in range(2)]
    agent_pids = [pid_of_attempt(marks, task_id) for task_id in running]
    d.proc.kill()
    d.proc.wait(timeout=5)
    wait_until(lambda: all(gone(p) for p in agent_pids), 3, "agents gone with the daemon")
    wait_until(lambda: not processes_of(tmp_path), 3, "nothing of the daemon left")


def test_exec_agents_that_clear_their_environment_still_die_with_the_daemon(
        run_daemon, marks: Path, tmp_path: Path) -> None:
    """`env -i` drops the DROPSITED_DAEMON marker; the watch still has the agent's pid."""
    clears_env = ["/bin/sh", "-c", 'echo $$ > "$MARKS/$DROPSITE_TASK_ID.pid"; exec env -i sleep 60']
    d = run_daemon([agent("bare", clears_env, env={"MARKS": str(marks)}, concurrency=2)])
    running = [d.drop(f"exec {i}", to="bare") for i in range(2)]
    agent_pids = [pid_of_attempt(marks, task_id) for task_id in running]
    wait_until(lambda: all(psutil.Process(p).name() == "sleep" for p in agent_pids), 5,
               "agents exec'd into env -i sleep")
    d.proc.kill()
    d.proc.wait(timeout=5)
    wait_until(lambda: all(gone(p) for p in agent_pids), 3, "agents gone with the daemon")


def test_the_watch_needs_nothing_of_the_daemon_s_sys_path(run_daemon, marks: Path,
                                                           tmp_path: Path) -> None:
    """A daemon run by a bare interpreter with PYTHONPATH (its watch runs with -I)."""
    base = getattr(sys, "_base_executable", sys.executable)
    site = [p for p in sys.path if p.endswith("site-packages")]
    repo = str(Path(__file__).resolve().parents[2])
    hang = ["/bin/sh", "-c", 'echo $$ > "$MARKS/$DROPSITE_TASK_ID.pid"; exec sleep 60']
    d = run_daemon([agent("hang", hang, env={"MARKS": str(marks)})], start=False)
    d.env = {**d.env, "PYTHONPATH": os.pathsep.join([repo, *site])}
    d.env.pop("VIRTUAL_ENV", None)
    d.command = [base, "-m", "dropsited"]
    d.start()
    agent_pid = pid_of_attempt(marks, d.drop(to="hang"))
    d.proc.kill()
    d.proc.wait(timeout=5)
    wait_until(lambda: gone(agent_pid), 3, "agent gone with the daemon")


def test_a_clean_stop_dismisses_the_death_watch_and_ctrl_c_does_not_reach_it(
        run_daemon, tmp_path: Path) -> None:
    d = run_daemon([agent("quick", ["/bin/echo", "quick"])])
    watch = death_watch_of(d.proc)
    assert os.getsid(watch.pid) != os.getsid(d.proc.pid)  # a terminal's ^C misses it
    assert d.wait_in(d.drop(to="quick"), "done")["result"] == {"output": "quick"}
    assert d.stop(signal.SIGINT) == 0
    wait_until(lambda: not watch.is_running(), 3, "death watch exited")
    assert "death watch" not in d.stderr()  # dismissed: it neither killed nor was replaced
    assert not processes_of(tmp_path)


def test_a_task_that_kills_every_agentloop_that_takes_it_ends_in_failed(run_daemon) -> None:
    """Each reap counts as an attempt, so a poison task stops looping (issue 3 §5)."""
    suicide = ("import os, signal\nfrom dropsited import DropSite, AgentLoop\n"
               "AgentLoop(DropSite(os.environ['DROPSITE_WORKSPACE']), 'loop',"
               " lambda task: os.kill(os.getpid(), signal.SIGKILL), poll_interval=0.05).run()")
    d = run_daemon([agent("loop", [sys.executable, "-c", suicide], mode="service",
                          start_seconds="0s", backoff={"initial": "0.05s", "max": "0.1s"},
                          give_up={"failures": 20, "window": "60s"})])
    task = d.wait_in(d.drop(to="loop", max_retries=2), "failed", timeout=15)
    assert task["retry_count"] == 3
    assert "holder_dead" in task["history"][-1]["error"]
    assert d.stop() == 0
