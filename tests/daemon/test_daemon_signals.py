"""SIGTERM drain, the second signal, SIGHUP reload (issue 3 §6) and sd_notify (issue 4)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from harness import agent, py, wait_until
from service.notify_socket import notify_socket  # tests/ is on sys.path (rootdir packages)

SERVICE = "import time\nwhile True: time.sleep(1)"
WORKER = """
import json, os, sys
for line in sys.stdin:
    task = json.loads(line)
    print(json.dumps({"id": task["id"], "status": "done", "result": {"pid": os.getpid()}}),
          flush=True)
"""



def test_sigterm_lets_a_running_task_finish_within_the_grace(run_daemon) -> None:
    d = run_daemon([agent("slow", "sleep 0.6; echo finished")], "--grace", "5")
    task_id = d.drop(to="slow")
    d.wait_in(task_id, "active")
    assert d.stop() == 0, d.stderr()
    task = d.wait_in(task_id, "done", timeout=1)
    assert task["result"] == {"output": "finished"}


def test_sigterm_requeues_a_task_longer_than_the_grace_without_using_an_attempt(
        run_daemon) -> None:
    d = run_daemon([agent("slow", ["sleep", "30"])], "--grace", "0.5")
    task_id = d.drop(to="slow")
    d.wait_in(task_id, "active")
    started = time.monotonic()
    assert d.stop() == 0, d.stderr()
    assert time.monotonic() - started < 4
    task = d.wait_in(task_id, "inbox", timeout=1)
    assert task["retry_count"] == 0
    assert task["history"][-1].get("released") is True
    assert d.folders_holding(task_id) == ["inbox"]


def test_a_second_sigterm_stops_at_once_and_requeues(run_daemon) -> None:
    d = run_daemon([agent("slow", ["sleep", "30"]),
                    agent("worker", py("import sys, time\nfor line in sys.stdin: time.sleep(30)"),
                          mode="worker", start_seconds="0.1s")], "--grace", "30")
    exec_task = d.drop(to="slow")
    worker_task = d.drop(to="worker")
    d.wait_in(exec_task, "active")
    d.wait_in(worker_task, "active")
    d.send(signal.SIGTERM)
    wait_until(lambda: "draining" in d.stderr(), 5, "drain started")
    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0, d.stderr()
    assert time.monotonic() - started < 4
    for task_id in (exec_task, worker_task):
        task = d.wait_in(task_id, "inbox", timeout=1)
        assert task["retry_count"] == 0


def test_sighup_restarts_only_what_changed_and_scales_without_killing(
        run_daemon, tmp_path: Path) -> None:
    agents = [agent("same", py(SERVICE), mode="service", start_seconds="0.1s"),
              agent("changed", py(SERVICE), mode="service", start_seconds="0.1s"),
              agent("scaled", py(WORKER), mode="worker", start_seconds="0.1s"),
              agent("removed", py(SERVICE), mode="service", start_seconds="0.1s")]
    d = run_daemon(agents)
    pids = {a["name"]: d.wait_agent(a["name"], lambda r: r["state"] == "RUNNING",
                                    what="RUNNING")["pids"] for a in agents}
    agents[1] = {**agents[1], "env": {"NEW": "1"}}
    agents[2] = {**agents[2], "concurrency": 3}
    d.write_manifest(agents[:3] + [agent("added", py(SERVICE), mode="service")])
    d.send(signal.SIGHUP)
    scaled = d.wait_agent("scaled", lambda r: len(r["pids"]) == 3, what="three workers")
    assert pids["scaled"][0] in scaled["pids"]
    changed = d.wait_agent("changed", lambda r: r["pids"] and r["pids"] != pids["changed"],
                           what="restarted")
    assert changed["pids"] != pids["changed"]
    d.wait_agent("added", lambda r: r["pids"], what="added agent started")
    wait_until(lambda: d.daemon_record().get("agents") == ["added", "changed", "same", "scaled"],
               5, "daemon.json lists the new agents")
    assert d.agent_record("same")["pids"] == pids["same"]
    ids = [d.drop(f"t{i}", to="scaled") for i in range(6)]
    assert all(d.wait_in(i, "done")["result"]["pid"] in scaled["pids"] for i in ids)

    # an invalid manifest is reported; everything keeps running
    d.manifest.write_text("workspace: ws\nagents:\n  - name: broken\n    timeout: ten\n")
    d.send(signal.SIGHUP)
    wait_until(lambda: "reload refused" in d.stderr(), 5, "reload refused in the log")
    time.sleep(0.3)  # give a wrong reload the time to do damage before looking
    assert d.agent_record("same")["pids"] == pids["same"]
    assert len(d.agent_record("scaled")["pids"]) == 3
    assert d.wait_in(d.drop(to="scaled"), "done")
    assert d.stop() == 0, d.stderr()


def test_sd_notify_ready_watchdog_status_reload_and_stopping(run_daemon, tmp_path: Path) -> None:
    with notify_socket(tmp_path) as sock:
        d = run_daemon([agent("svc", py(SERVICE), mode="service", start_seconds="0.1s")],
                       env={"NOTIFY_SOCKET": sock.env_value, "WATCHDOG_USEC": "400000"},
                       start=False)
        d.start(wait=False)
        sock.wait_for("READY=1", timeout=10)
        assert d.agent_record("svc")["pids"], "READY=1 only once the agents are started"
        assert any(f.startswith("STATUS=") for f in sock.fields())
        wait_until(lambda: sock.fields().count("WATCHDOG=1") >= 4, 3, "four watchdog pings")
        d.send(signal.SIGHUP)
        sock.wait_for("RELOADING=1", timeout=5)
        wait_until(lambda: sock.fields().count("READY=1") >= 2, 5, "READY=1 after the reload")
        fields = sock.fields()
        assert fields.index("RELOADING=1") < len(fields) - 1 - fields[::-1].index("READY=1")
        assert d.stop() == 0, d.stderr()
        sock.wait_for("STOPPING=1", timeout=2)
    assert sys.executable


def test_scaling_a_worker_down_lets_busy_instances_finish(run_daemon) -> None:
    """Regression: resize() used to SIGTERM surplus workers mid-task (an attempt used)."""
    slow = py("import json, os, sys, time\nfor line in sys.stdin:\n"
              "    task = json.loads(line)\n    time.sleep(0.8)\n"
              "    print(json.dumps({'id': task['id'], 'result': {'pid': os.getpid()}}), flush=True)")
    agents = [agent("w", slow, mode="worker", concurrency=2, start_seconds="0.1s")]
    d = run_daemon(agents)
    pids = d.wait_agent("w", lambda r: len(r["pids"]) == 2, what="two workers")["pids"]
    ids = [d.drop(f"t{i}", to="w") for i in range(2)]
    for task_id in ids:
        d.wait_in(task_id, "active")
    d.write_manifest([{**agents[0], "concurrency": 1}])
    d.send(signal.SIGHUP)
    for task_id in ids:
        task = d.wait_in(task_id, "done")
        assert task["retry_count"] == 0, task["history"]
    assert d.wait_agent("w", lambda r: len(r["pids"]) == 1, what="one worker left")["pids"][0] in pids
    assert d.stop() == 0
