"""Real processes: claim races, SIGKILL at random instants, dead and live
holders, pid reuse, and AgentLoop's clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dropsited import ClaimLost, DropSite, TaskBuilder
from dropsited.protocol.holder import Holder, process_start, this_host

from .conftest import FakeClock, all_task_files, python_child, run_child, temp_files


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fill(ws: Path, n: int, **builder: object) -> list[str]:
    ds = DropSite(ws, durable=False)
    ids = []
    for i in range(n):
        b = TaskBuilder(f"t{i}", "me")
        if "max_retries" in builder:
            b = b.max_retries(builder["max_retries"])  # type: ignore[arg-type]
        ids.append(ds.submit(b.build()))
    return ids


RACER = """
import sys, time
from pathlib import Path
from dropsited import DropSite
ws, me, out, go = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
ds = DropSite(ws, durable=False)
while not go.exists():
    time.sleep(0.001)
with open(out, "w") as fh:
    while (task := ds.claim_next(me)) is not None:
        fh.write(task.id + "\\n")
        ds.complete(task, {"by": me})
"""


def test_eight_processes_race_for_2000_tasks(ws: Path, tmp_path: Path) -> None:
    ids = fill(ws, 2000)
    go = tmp_path / "go"
    procs = [python_child(RACER, str(ws), f"racer{i}", str(tmp_path / f"claimed{i}"), str(go))
             for i in range(8)]
    try:
        time.sleep(0.5)  # let them all import and wait at the line
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    claimed = []
    per_racer = []
    for i in range(8):
        lines = (tmp_path / f"claimed{i}").read_text().split()
        per_racer.append(len(lines))
        claimed += lines
    assert sorted(claimed) == sorted(ids)  # each claimed exactly once, none lost
    assert all_task_files(ws) == {tid: ["done"] for tid in ids}
    assert temp_files(ws) == []
    assert sum(1 for n in per_racer if n) >= 2, per_racer  # it really was a race


CHAOS = """
import random, sys
from dropsited import DropSite
ws, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
ds = DropSite(ws, durable=False, retry_base=0)
ds.recover()
working = False
while (task := ds.claim_next("chaos")) is not None:
    if not working:  # the first claim is after the inbox scan: the moves start here
        open(sys.argv[3], "w").close()
        working = True
    roll = rng.random()
    if roll < 0.25:
        ds.complete(task, {"ok": roll})
    elif roll < 0.9:
        ds.fail(task, "injected")
    elif roll < 0.97:
        ds.fail(task, "busy", tempfail=True)
    else:
        ds.block(task, "injected block")
"""


def check_consistent(ws: Path, ids: list[str]) -> dict[str, str]:
    files = all_task_files(ws)
    assert temp_files(ws) == []
    assert sorted(files) == sorted(ids)  # none lost, no stranger
    where = {}
    for tid, folders in files.items():
        assert len(folders) == 1, (tid, folders)
        folder = folders[0]
        where[tid] = folder
        ds = DropSite(ws, durable=False, create=False)
        task = ds.get_task(tid)
        assert task is not None
        statuses = [e["status"] for e in task.history]
        assert task.status == statuses[-1] or folder == "active"
        if folder == "done":
            assert statuses[-1] == "done"
            assert "active" in statuses[:-1] and statuses[-2] == "active", statuses
            assert task.result is not None
        elif folder == "failed":
            assert statuses[-1] == "failed"
        elif folder == "inbox":
            assert statuses[-1] in ("inbox", "retry")
        elif folder == "blocked":
            assert statuses[-1] == "blocked"
    return where


def test_sigkill_at_random_instants_then_recover(ws: Path, tmp_path: Path) -> None:
    ids = fill(ws, 1500, max_retries=8)
    rng = random.Random(1234)
    kills = interrupted = 0
    for round_ in range(40):
        if round_ >= 20 and interrupted >= 3:
            break  # enough kills landed mid-move; more rounds only when they did not
        if len(os.listdir(ws / "inbox")) < 500:  # a drained inbox leaves nothing to interrupt
            ids += fill(ws, 500, max_retries=8)
        working = tmp_path / f"working{round_}"
        child = python_child(CHAOS, str(ws), str(round_), str(working),
                             stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not working.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.3)  # a random instant of claims and moves
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
        interrupted += len(os.listdir(ws / "active")) + len(temp_files(ws))
    assert kills >= 5  # on a loaded machine a child may drain the inbox before its kill
    assert interrupted >= 3  # kills did land mid-claim or mid-move
    DropSite(ws, durable=False).recover()
    where = check_consistent(ws, ids)
    assert "active" not in where.values()  # every dead holder's task was given back
    # and the queue still works afterwards: drain what is left
    run_child(CHAOS.replace("ds.recover()", "pass"), str(ws), "999", str(tmp_path / "last"),
              timeout=120)
    check_consistent(ws, ids)


def test_reaped_claim_then_late_completion_raises_claim_lost(ws: Path) -> None:
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("x", "me").build())
    run_child("""
        import sys
        from dropsited import DropSite
        assert DropSite(sys.argv[1], durable=False).claim("ghost", sys.argv[2])
    """, str(ws), tid)
    held = ds.get_task(tid)  # as the holder saw it, holder from the active/ name
    assert held.holder.agent == "ghost" and held.holder.is_alive() is False
    assert ds.reap() == [(tid, "holder_dead")]
    with pytest.raises(ClaimLost):
        ds.complete(held, {"late": True})
    assert all_task_files(ws) == {tid: ["inbox"]}
    record = json.loads((ws / "late-results.jsonl").read_text().splitlines()[-1])
    assert record["task_id"] == tid and record["result"] == {"late": True}
    requeued = ds.get_task(tid)
    assert requeued.history[-1]["reaped"] is True and requeued.retry_count == 1
    assert requeued.assigned_to is None


def test_live_holder_never_reaped_by_reap_stale(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    tid = ds.submit(TaskBuilder("long", "me").build())
    task = ds.claim_next("w")
    clock.advance(10 * 24 * 3600)
    assert ds.reap_stale(timeout_seconds=1) == []
    assert all_task_files(ws) == {tid: ["active"]}
    ds.complete(task, {"after": "ten days"})
    assert all_task_files(ws) == {tid: ["done"]}


def test_live_child_holder_kept_then_reaped_when_it_dies(ws: Path, tmp_path: Path) -> None:
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("x", "me").build())
    ready = tmp_path / "ready"
    child = python_child("""
        import sys, time
        from pathlib import Path
        from dropsited import DropSite
        assert DropSite(sys.argv[1], durable=False).claim("slow", sys.argv[2])
        Path(sys.argv[3]).touch()
        time.sleep(60)
    """, str(ws), tid, str(ready))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert ds.reap_stale(timeout_seconds=0) == []
        assert all_task_files(ws) == {tid: ["active"]}
    finally:
        child.kill()
        child.wait()
    assert ds.reap_stale(timeout_seconds=300) == [tid]
    assert all_task_files(ws) == {tid: ["inbox"]}


def test_pid_reuse_does_not_pass_for_the_holder(ws: Path) -> None:
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("x", "me").build())
    me = os.getpid()
    impostor = Holder("w", this_host(), me, (process_start(me) or 0) + 12345, int(time.time() * 1000))
    os.rename(ws / "inbox" / f"{tid}.json", ws / "active" / impostor.file_name(tid))
    assert impostor.is_alive() is False
    assert ds.reap_stale(timeout_seconds=3600) == [tid]
    assert all_task_files(ws) == {tid: ["inbox"]}


def test_other_host_holder_reaped_only_after_timeout(ws: Path) -> None:
    clock = FakeClock()
    ds = DropSite(ws, durable=False, clock=clock)
    tid = ds.submit(TaskBuilder("x", "me").build())
    far = Holder("w", "another-host", 1, 1, int(clock() * 1000))
    os.rename(ws / "inbox" / f"{tid}.json", ws / "active" / far.file_name(tid))
    assert ds.reap_stale(timeout_seconds=300) == []
    clock.advance(301)
    assert ds.reap_stale(timeout_seconds=300) == [tid]


def test_reaping_exhausted_task_goes_to_failed(ws: Path) -> None:
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("x", "me").max_retries(0).build())
    Holder("w", this_host(), dead_pid(), 1, 0)
    dead = Holder("w", this_host(), dead_pid(), 1, int(time.time() * 1000))
    os.rename(ws / "inbox" / f"{tid}.json", ws / "active" / dead.file_name(tid))
    assert ds.reap() == [(tid, "holder_dead")]
    assert all_task_files(ws) == {tid: ["failed"]}


@pytest.mark.timeout(60)
def test_agent_loop_releases_task_on_sigterm(ws: Path) -> None:
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("slow", "me").build())
    child = python_child("""
        import sys, time
        from dropsited import AgentLoop, DropSite
        AgentLoop(DropSite(sys.argv[1], durable=False), "sleeper",
                  lambda t: time.sleep(60), poll_interval=0.05).run()
    """, str(ws), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.listdir(ws / "active") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.listdir(ws / "active")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert all_task_files(ws) == {tid: ["inbox"]}
    task = ds.get_task(tid)
    assert task.retry_count == 0 and task.history[-1]["released"] is True
    assert task.assigned_to is None


def test_agent_loop_signal_between_claim_and_handler_releases_without_running(ws: Path) -> None:
    """A stop requested after the claim but before the handler starts gives the task back
    at once; the handler (here: one that would run 60 s) never starts."""
    from dropsited import AgentLoop
    ds = DropSite(ws, durable=False)
    tid = ds.submit(TaskBuilder("t", "me").build())
    ran = []
    loop = AgentLoop(ds, "a", lambda t: ran.append(t.id), verbose=False)
    task = ds.claim_next("a")
    loop.stop()  # what the SIGTERM handler does when no handler is running yet
    try:
        loop._handle(task)
    except BaseException as exc:  # _Stop ends run(); here we only check what it did
        assert type(exc).__name__ == "_Stop"
    assert ran == [] and ds.locate(tid).folder == "inbox"
