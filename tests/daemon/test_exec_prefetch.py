"""exec agents with short tasks claim one task ahead per process (docs/MANIFEST.md, `concurrency`).

What must hold whatever the prefetch does: never more processes than `concurrency`,
every task run once, a task claimed ahead never waits behind a long one while the
agent has no short-task history, and a drain gives such tasks back at once, unused.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness import agent, wait_until, write_script

# Records each run as start/end marker files, so overlap can be counted afterwards.
TRACED = """#!/bin/bash
cat > /dev/null
start=$(date +%s.%N)
sleep 0.01
end=$(date +%s.%N)
echo "$start $end" > "$TRACE/$DROPSITE_TASK_ID.$$"
echo '{}'
"""

# Sleeps 2.5 s for a task titled "slow"; answers at once (a few ms of bash) otherwise.
BY_TITLE = """#!/bin/bash
task=$(cat)
case "$task" in *'"title": "slow"'*) sleep 2.5 ;; esac
echo '{}'
"""


def _runs(trace: Path) -> list[tuple[str, float, float]]:
    runs = []
    for path in trace.iterdir():
        start, end = path.read_text().split()
        runs.append((path.name.split(".")[0], float(start), float(end)))
    return runs


def _max_overlap(runs: list[tuple[str, float, float]]) -> int:
    edges = sorted([(s, 1) for _, s, _ in runs] + [(e, -1) for _, _, e in runs])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_claiming_ahead_never_runs_more_processes_than_concurrency(run_daemon, tmp_path) -> None:
    """60 short tasks on 2 processes: each runs once, never three at a time."""
    trace = tmp_path / "trace"
    trace.mkdir()
    script = write_script(tmp_path / "traced.sh", TRACED)
    d = run_daemon([agent("quick", [str(script)], concurrency=2,
                          env={"TRACE": str(trace)})])
    ids = [d.drop(f"t{i}", to="quick") for i in range(60)]
    most_held = 0
    deadline = time.monotonic() + 60
    while sum(1 for _ in (d.ws / "done").iterdir()) < len(ids) and time.monotonic() < deadline:
        most_held = max(most_held, len(os.listdir(d.ws / "active")))
        time.sleep(0.002)
    for task_id in ids:
        d.wait_in(task_id, "done")
    runs = _runs(trace)
    assert sorted(r[0] for r in runs) == sorted(ids)  # each task ran exactly once
    assert _max_overlap(runs) <= 2
    assert most_held <= 4  # two running, at most one claimed ahead behind each
    assert d.stop() == 0


def test_no_task_is_claimed_ahead_behind_a_long_one(run_daemon, tmp_path) -> None:
    script = write_script(tmp_path / "by_title.sh", BY_TITLE)
    d = run_daemon([agent("one", [str(script)])])
    slow = d.drop("slow", to="one")
    d.wait_in(slow, "active")
    waiting = d.drop("quick", to="one")
    started = time.monotonic()
    while d.folder_of(slow) == "active" and time.monotonic() - started < 5:
        assert d.folder_of(waiting) == "inbox"  # no short task seen yet: no claim ahead
        time.sleep(0.05)
    d.wait_in(slow, "done")
    d.wait_in(waiting, "done")
    # The last task took a few ms: now a task is claimed behind the next slow one.
    d.wait_in(d.drop("quick", to="one"), "done")
    slow = d.drop("slow", to="one")
    d.wait_in(slow, "active")
    behind = d.drop("quick", to="one")
    d.wait_in(behind, "active", timeout=1)
    d.wait_agent("one", lambda r: r["running"] == [slow] and r["claimed_ahead"] == [behind],
                 timeout=1.8, what="the task claimed ahead listed apart")
    d.wait_in(slow, "done")
    d.wait_in(behind, "done")
    assert d.stop() == 0


def test_a_drain_gives_tasks_claimed_ahead_back_at_once_unused(run_daemon, tmp_path) -> None:
    script = write_script(tmp_path / "by_title.sh", BY_TITLE)
    d = run_daemon([agent("one", [str(script)])], "--grace", "10")
    d.wait_in(d.drop("quick", to="one"), "done")  # a short task: the agent may now claim ahead
    slow = d.drop("slow", to="one")
    d.wait_in(slow, "active")
    behind = d.drop("quick", to="one")
    d.wait_in(behind, "active", timeout=1)
    d.send(signal.SIGTERM)
    task = d.wait_in(behind, "inbox", timeout=1.5)  # long before the slow task ends
    assert d.folder_of(slow) == "active"
    assert task["retry_count"] == 0
    assert task["history"][-1].get("released") is True
    assert d.proc.wait(timeout=10) == 0, d.stderr()  # once the slow task is done
    assert d.folders_holding(slow) == ["done"]
    assert d.folders_holding(behind) == ["inbox"]


# Regression (review of the claim-ahead change): slot threads started under a higher
# concurrency outlived a reload that lowered it, and with tasks claimed ahead all of
# them ran at once (4 processes with concurrency 2).
SLOW_OR_QUICK = """#!/bin/bash
task=$(cat)
case "$task" in *'"title": "slow"'*)
  start=$(date +%s.%N); sleep 1; end=$(date +%s.%N)
  echo "$start $end" > "$TRACE/$DROPSITE_TASK_ID.$$" ;;
esac
echo '{}'
"""


def test_a_reload_that_lowers_concurrency_is_obeyed_by_every_slot(run_daemon, tmp_path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    script = write_script(tmp_path / "a.sh", SLOW_OR_QUICK)

    def spec(concurrency: int) -> list[dict]:
        return [agent("a", [str(script)], concurrency=concurrency, env={"TRACE": str(trace)})]

    d = run_daemon(spec(4))
    for task_id in [d.drop("quick", to="a") for _ in range(8)]:  # four slot threads, quick history
        d.wait_in(task_id, "done")
    d.write_manifest(spec(2))
    d.send(signal.SIGHUP)
    wait_until(lambda: "concurrency 4 -> 2" in d.stderr(), 5, "reload applied")
    for task_id in [d.drop("slow", to="a") for _ in range(6)]:
        d.wait_in(task_id, "done", timeout=30)
    runs = [(p.name, *map(float, p.read_text().split())) for p in trace.iterdir()]
    assert len(runs) == 6
    assert _max_overlap(runs) <= 2
    assert d.stop() == 0
