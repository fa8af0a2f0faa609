"""Pipelined workers (`prefetch: N`), end to end with a real Python worker and a real,
durable daemon: N tasks in flight, replies out of order and matched by id, a death with
N in flight gives every task back, a timeout fails only its own task."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from harness import agent, daemon_session, wait_until, write_script

# A worker that reads `HOLD` task lines before answering any, writes the ids it holds to
# held-<life>.json, then acts by `MODE` on its first life (later lives answer in order):
#   reverse: answers the held tasks last first (and one reply for an id it never got);
#   die:     is killed by SIGKILL holding them;
#   partial: answers only the tasks whose context has "quick", then hangs.
WORKER = textwrap.dedent("""\
    import json, os, signal, sys, time
    from pathlib import Path

    here = Path(sys.argv[1])
    mode, hold = sys.argv[2], int(sys.argv[3])
    life = len(list(here.glob("held-*.json")))
    held = []
    for line in sys.stdin:
        task = json.loads(line)
        if life > 0:
            print(json.dumps({"id": task["id"], "status": "done", "result": {"life": life}}), flush=True)
            continue
        held.append(task)
        if len(held) < hold:
            continue
        (here / f"held-{life}.json").write_text(json.dumps([t["id"] for t in held]))
        if mode == "reverse":
            print(json.dumps({"id": "no-such-task", "result": {}}), flush=True)
            for i, t in enumerate(reversed(held)):
                print(json.dumps({"id": t["id"], "status": "done", "result": {"order": i}}),
                      flush=True)
            held, life = [], 1
        elif mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            for t in held:
                if t["context"].get("quick"):
                    print(json.dumps({"id": t["id"], "status": "done", "result": {"quick": True}}), flush=True)
            time.sleep(3600)
""")


@pytest.fixture
def run_daemon(tmp_path: Path):
    with daemon_session(tmp_path) as make:
        yield make


def durable_daemon(make, tmp_path: Path, mode: str, hold: int, **keys: object):
    """A daemon without --fast (the recorder's group commit on) running the worker."""
    script = write_script(tmp_path / "worker.py", WORKER)
    command = [sys.executable, str(script), str(tmp_path), mode, str(hold)]
    d = make([agent("w", command, mode="worker", start_seconds=0,
                    backoff={"initial": 0.05, "max": 0.05}, **keys)], start=False)
    d.args = [a for a in d.args if a != "--fast"]
    return d.start()


def held_by(tmp_path: Path, life: int) -> list[str]:
    path = tmp_path / f"held-{life}.json"
    return json.loads(path.read_text()) if path.exists() else []


def test_n_tasks_in_flight_are_answered_out_of_order_and_matched_by_id(run_daemon, tmp_path):
    d = durable_daemon(run_daemon, tmp_path, "reverse", 4, prefetch=4)
    ids = [d.drop(f"t{i}") for i in range(4)]
    results = {tid: d.wait_in(tid, "done")["result"] for tid in ids}
    assert sorted(held_by(tmp_path, 0)) == sorted(ids)  # all four were in flight at once
    assert sorted(r["order"] for r in results.values()) == [0, 1, 2, 3]
    assert results[ids[-1]] == {"order": 0}  # the last one sent was answered first
    assert "[reply for id no-such-task, not a task in flight; ignored]" in d.log_text("w")
    record = d.wait_agent("w", lambda r: r.get("tasks_done") == 4)
    assert record["tasks_failed"] == 0
    assert d.stop() == 0


def test_a_death_with_n_in_flight_gives_every_task_back(run_daemon, tmp_path):
    d = durable_daemon(run_daemon, tmp_path, "die", 3, prefetch=3)
    ids = [d.drop(f"t{i}") for i in range(3)]
    docs = {tid: d.wait_in(tid, "done") for tid in ids}
    assert sorted(held_by(tmp_path, 0)) == sorted(ids)
    assert all(doc["result"] == {"life": 1} for doc in docs.values())  # all ran again
    backs = {tid: [e for e in doc["history"][2:] if e.get("status") in ("inbox", "retry")]
             for tid, doc in docs.items()}
    assert all(len(b) == 1 for b in backs.values()), backs  # each went back to inbox/ once
    died = [tid for tid, b in backs.items() if b[0].get("status") == "retry"]
    released = [tid for tid, b in backs.items() if b[0].get("released")]
    assert len(died) == 1 and len(released) == 2  # the oldest took the blame
    assert "worker died mid-task" in backs[died[0]][0]["error"]
    assert all(backs[t][0]["reason"] == "worker ended before answering" for t in released)
    for tid in ids:
        assert d.folders_holding(tid) == ["done"]
    assert d.stop() == 0


def test_a_timeout_fails_only_its_task_and_restarts_the_worker(run_daemon, tmp_path):
    d = durable_daemon(run_daemon, tmp_path, "partial", 2, prefetch=2, timeout="1s")
    quick = d.drop("quick", context={"quick": True}, max_retries=0)
    slow = d.drop("slow", max_retries=0)
    assert d.wait_in(quick, "done")["result"] == {"quick": True}
    failed = d.wait_in(slow, "failed")
    assert failed["history"][-1]["reason"] == "timeout"
    assert sorted(held_by(tmp_path, 0)) == sorted([quick, slow])
    record = d.wait_agent("w", lambda r: r.get("tasks_failed") == 1 and r["state"] == "RUNNING")
    assert record["tasks_done"] == 1
    assert "killed by SIGTERM" in record["instances"][0]["last_error"]  # restarted
    later = d.drop("after the restart")
    assert d.wait_in(later, "done")["result"] == {"life": 1}
    assert d.stop() == 0


def test_prefetch_is_refused_outside_worker_mode(run_daemon, tmp_path):
    d = run_daemon([agent("e", ["/bin/true"], prefetch=2)], start=False)
    check = d.cli("check", "-c", str(d.manifest))
    assert check.returncode != 0
    assert "agents[0].prefetch" in check.stdout + check.stderr
    assert "only applies to mode 'worker'" in check.stdout + check.stderr


def test_a_kill_9_of_a_durable_daemon_mid_drain_loses_nothing(run_daemon, tmp_path):
    """Group commit end to end: the daemon dies by SIGKILL while batches of a pipelined
    worker's outcomes are being written; the next daemon's recovery finishes the rest,
    and every task is done exactly once, its file a valid task."""
    worker = Path(__file__).resolve().parents[2] / "bench" / "agents" / "json_worker.py"
    d = run_daemon([agent("w", [sys.executable, str(worker)], mode="worker", prefetch=4,
                          concurrency=2, start_seconds=0)], start=False)
    d.args = [a for a in d.args if a != "--fast"]
    ids = [d.drop(f"t{i}") for i in range(300)]
    d.start()
    wait_until(lambda: len(list((d.ws / "done").glob("*.json"))) >= 60, 30, "60 done",
               daemon=d)
    d.proc.kill()
    d.proc.wait(timeout=10)
    before = len(list((d.ws / "done").glob("*.json")))
    assert before < 300, "the drain ended before the kill; nothing was tested"
    d.start()
    wait_until(lambda: len(list((d.ws / "done").glob("*.json"))) == 300, 60, "all done",
               daemon=d)
    for tid in ids:
        assert d.folders_holding(tid) == ["done"], tid
        assert d.ds.store.load(d.ws / "done" / f"{tid}.json").result == {}
    assert not [p.name for p in (d.ws / "done").iterdir() if p.name.startswith(".")]
    assert d.stop() == 0
