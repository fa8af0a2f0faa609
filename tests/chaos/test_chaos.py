"""Chaos: tasks through exec and worker agents while agents and the daemon are SIGKILLed.

A chaos thread SIGKILLs a random agent process every 50-200 ms; the test SIGKILLs the
daemon itself three times (at a quarter, half and three quarters of the run) and starts
it again. At the end every task is in done/ and in no other folder, nothing is left in
quarantine/ or as a temp file, and no agent process outlives the final stop.

The daemon runs with `--fast` (no fsync: SIGKILL does not lose page-cache writes, only a
power cut would) and `--retry-base 0.05` (the harness's), so killed attempts come back
quickly. `CHAOS_TASKS` sets the number of tasks (2,000 by default, 20,000 in the soak run).
Set `DROPSITED_FIGURES=FILE` to append the run's figures to FILE as one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from harness import agent, py, wait_until

from dropsited.protocol import TaskBuilder

from .common import (
    agents_alive,
    assert_all_done_once,
    quarantine_entries,
    report,
    runs_per_task,
    temp_files,
)

MAX_RETRIES = 50
DAEMON_KILLS = 3

EXEC_PY = """
import json, os, sys
task = json.load(sys.stdin)
fd = os.open(os.environ["RUNLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, (task["id"] + "\\n").encode())
print(json.dumps({"by": "exec-py", "title": task["title"]}))
"""
EXEC_SH = 'cat >/dev/null; echo "$DROPSITE_TASK_ID" >> "$RUNLOG"; echo \'{"by": "exec-sh"}\''
WORKER_PY = """
import json, os, sys
fd = os.open(os.environ["RUNLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
for line in sys.stdin:
    task = json.loads(line)
    os.write(fd, (task["id"] + "\\n").encode())
    sys.stdout.write(json.dumps({"id": task["id"], "status": "done",
                                 "result": {"by": "worker"}}) + "\\n")
    sys.stdout.flush()
"""
TAGS = ("py", "sh", "wk")


def manifest(runlog: Path) -> list[dict]:
    # Workers are killed far more often than a real give_up policy allows: never go FATAL.
    survive = {"restart": "always", "start_seconds": 0, "give_up": {"failures": 10**6, "window": 1},
               "backoff": {"initial": 0.02, "max": 0.2}}
    env = {"RUNLOG": str(runlog)}
    return [
        agent("exec-py", [sys.executable, "-S", "-c", EXEC_PY], tags=["py"], concurrency=3,
              env=env),
        agent("exec-sh", EXEC_SH, tags=["sh"], concurrency=3, env=env),
        agent("worker", py(WORKER_PY), mode="worker", tags=["wk"], concurrency=3, env=env,
              **survive),
    ]


class AgentKiller(threading.Thread):
    """SIGKILLs one random descendant of the current daemon every 50-200 ms."""

    def __init__(self, daemon_pid: Callable[[], int]) -> None:
        super().__init__(daemon=True, name="chaos")
        self.daemon_pid = daemon_pid
        self.halt = threading.Event()
        self.kills = 0
        self.rng = random.Random(5)

    def run(self) -> None:
        while not self.halt.wait(self.rng.uniform(0.05, 0.2)):
            try:
                victims = psutil.Process(self.daemon_pid()).children(recursive=True)
                if victims:
                    self.rng.choice(victims).send_signal(signal.SIGKILL)
                    self.kills += 1
            except psutil.Error:
                continue  # the victim already exited, or the daemon is being restarted


def drop_tasks(ds, n: int) -> set[str]:
    ids = set()
    for i in range(n):
        task = (TaskBuilder(f"chaos {i}", "chaos").tag(TAGS[i % len(TAGS)])
                .max_retries(MAX_RETRIES).context({"n": i}).build())
        ids.add(ds.submit(task))
    return ids


def done_count(ws: Path) -> int:
    return sum(1 for name in os.listdir(ws / "done") if name.endswith(".json"))


def run_chaos(run_daemon, tmp_path: Path, n: int, deadline: float) -> dict:
    runlog = tmp_path / "runs.log"
    d = run_daemon(manifest(runlog), "--log-level", "info")
    started = time.monotonic()
    ids = drop_tasks(d.ds, n)
    killer = AgentKiller(lambda: d.proc.pid)
    killer.start()
    daemon_kills = 0
    try:
        while (done := done_count(d.ws)) < n:
            if done >= n * (daemon_kills + 1) / (DAEMON_KILLS + 1) and daemon_kills < DAEMON_KILLS:
                d.proc.kill()
                d.proc.wait(timeout=10)
                daemon_kills += 1
                d.start()
            assert d.proc.poll() is None, f"daemon died on its own:\n{d.stderr()[-3000:]}"
            assert time.monotonic() - started < deadline, (
                f"only {done}/{n} done after {deadline}s:\n{d.stderr()[-3000:]}")
            time.sleep(0.1)
    finally:
        killer.halt.set()
        killer.join()
    elapsed = time.monotonic() - started
    assert d.stop() == 0, d.stderr()[-3000:]

    assert_all_done_once(d.ws, ids)
    assert temp_files(d.ws) == []
    assert quarantine_entries(d.ws) == []
    wait_until(lambda: not agents_alive(d.ws), 5, "no agent process alive after the stop")
    attempts_lost = 0
    for task_id in ids:
        doc = json.loads((d.ws / "done" / f"{task_id}.json").read_text())
        assert doc["status"] == "done" and doc["history"][-1]["status"] == "done"
        attempts_lost += sum(1 for e in doc["history"] if e["status"] == "retry" or e.get("reaped"))
    runs = runs_per_task(runlog)
    assert set(runs) == ids, "every task ran at least once, and nothing else ran"
    figures = {
        "suite": "chaos", "tasks": n, "seconds": round(elapsed, 1),
        "tasks_per_second": round(n / elapsed, 1), "agent_kills": killer.kills,
        "daemon_kills": daemon_kills, "failed_or_reaped_attempts": attempts_lost,
        "executions": sum(runs.values()),
        "repeated_executions": sum(runs.values()) - n,
        "tasks_run_more_than_once": sum(1 for c in runs.values() if c > 1),
        "most_runs_of_one_task": max(runs.values()),
    }
    report(figures)
    return figures


def test_chaos_nothing_lost(run_daemon, tmp_path: Path) -> None:
    n = int(os.environ.get("CHAOS_TASKS", "2000"))
    run_chaos(run_daemon, tmp_path, n, deadline=max(240.0, n / 5))


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_chaos_soak_20000(run_daemon, tmp_path: Path) -> None:
    run_chaos(run_daemon, tmp_path, 20_000, deadline=6000.0)
