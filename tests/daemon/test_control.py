"""Control verbs end to end: `dropsited stop/start/restart/scale/cancel` from a second
process against a real daemon running real exec and worker agents (PROTOCOL.md §14)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
from harness import agent, daemon_session, gone, py, wait_until

from dropsited.protocol import json_rules
from dropsited.protocol.control import CONTROL, reply_file

ME = pwd.getpwuid(os.geteuid()).pw_name

# Each writes its pid to $PIDS/<task id>, so a test can see the very process go.
EXEC = py("import json, os, sys, time\n"
          "t = json.load(sys.stdin)\n"
          "open(os.path.join(os.environ['PIDS'], t['id']), 'w').write(str(os.getpid()))\n"
          "time.sleep(t['context'].get('sleep', 0))\n"
          "print(json.dumps({'slept': True}))\n")
WORKER = py("import json, os, sys, time\n"
            "for line in sys.stdin:\n"
            "    t = json.loads(line)\n"
            "    open(os.path.join(os.environ['PIDS'], t['id']), 'w').write(str(os.getpid()))\n"
            "    time.sleep(t['context'].get('sleep', 0))\n"
            "    print(json.dumps({'id': t['id'], 'pid': os.getpid()}), flush=True)\n")


def _agents(pids) -> list[dict]:
    env = {"PIDS": str(pids)}
    return [agent("sleeper", EXEC, tags=["exec"], concurrency=2, stop_grace="0.3s", env=env),
            agent("lines", WORKER, mode="worker", tags=["work"], start_seconds="0.1s",
                  stop_grace="0.3s", env=env)]


@pytest.fixture
def control_daemon(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    with daemon_session(tmp_path) as make:
        d = make(_agents(pids))
        d.pids = pids
        yield d


def _running_pid(d, task_id: str) -> int:
    """The pid of the process running `task_id` once it has started."""
    path = d.pids / task_id
    wait_until(lambda: path.exists() and path.read_text(), 10, f"{task_id} started", daemon=d)
    return int(path.read_text())


def _ctl(d, *args: str):
    return d.cli(*args, "-w", str(d.ws))


def _last(task: dict) -> dict:
    return task["history"][-1]


def test_cancel_running_exec_task_then_requeue(control_daemon):
    d = control_daemon
    task_id = d.drop("long", tags=("exec",), context={"sleep": 60})
    pid = _running_pid(d, task_id)

    done = d.cli("cancel", str(d.ws), task_id, "--requeue")
    assert done.returncode == 0, done.stderr
    assert "cancelled" in done.stdout
    assert gone(pid)
    entry = next(e for e in reversed(d.ds.get_task(task_id).history) if e.get("cancelled"))
    assert entry["requeued"] is True and entry["reason"] == f"cancelled by {ME}"
    assert entry["uid"] == os.geteuid()

    second = _running_pid_after(d, task_id, pid)  # requeued: it runs again
    done = d.cli("cancel", str(d.ws), task_id, "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and reply["by"] == {"user": ME, "uid": os.geteuid()}
    assert gone(second)
    task = d.wait_in(task_id, "failed", timeout=2)
    assert _last(task)["error"] == f"cancelled by {ME}"
    assert _last(task)["by"] == ME and _last(task)["cancelled"] is True
    assert d.agent_record("sleeper")["state"] == "RUNNING"
    again = d.cli("cancel", str(d.ws), task_id)
    assert again.returncode == 1 and "already finished (in failed/)" in again.stderr
    assert f"cancel {task_id}" in d.stderr() and f"uid {os.geteuid()}" in d.stderr()


def _running_pid_after(d, task_id: str, old: int) -> int:
    path = d.pids / task_id
    wait_until(lambda: path.exists() and path.read_text() not in ("", str(old)), 10,
               f"{task_id} running again", daemon=d)
    return int(path.read_text())


def test_cancel_worker_task_restarts_its_instance(control_daemon):
    d = control_daemon
    task_id = d.drop("long", tags=("work",), context={"sleep": 60})
    pid = _running_pid(d, task_id)
    assert d.agent_record("lines")["pids"] == [pid]

    done = d.cli("cancel", str(d.ws), task_id)
    assert done.returncode == 0, done.stderr
    assert gone(pid)
    assert _last(d.wait_in(task_id, "failed", timeout=2))["error"] == f"cancelled by {ME}"
    record = d.wait_agent("lines", lambda r: r["state"] == "RUNNING" and r["pids"]
                          and r["pids"] != [pid], what="restarted with a new pid")
    assert record["tasks_failed"] == 0  # a cancel is not a failure of the agent
    quick = d.drop("quick", tags=("work",))
    assert d.wait_in(quick, "done")["result"]["pid"] == record["pids"][0]


def test_cancel_tasks_at_rest_and_bad_ids(control_daemon):
    d = control_daemon
    waiting = d.drop("for nobody", to="nobody")
    done = d.cli("cancel", str(d.ws), waiting)
    assert done.returncode == 0, done.stderr
    assert _last(d.wait_in(waiting, "failed", timeout=2))["by"] == ME

    bad = d.cli("cancel", str(d.ws), "../../etc/passwd")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    missing = d.cli("cancel", str(d.ws), "0" * 32)
    assert missing.returncode == 1 and "no task" in missing.stderr

    assert d.stop() == 0  # no daemon: a task at rest is still simply moved
    later = d.drop("later", to="nobody")
    done = d.cli("cancel", str(d.ws), later, "--requeue")
    assert done.returncode == 0 and d.folder_of(later) == "inbox"
    done = d.cli("cancel", str(d.ws), later)
    assert done.returncode == 0 and d.folder_of(later) == "failed"


def test_stop_holds_across_reload_and_scale_until_start(control_daemon):
    d = control_daemon
    task_id = d.drop("long", tags=("exec",), context={"sleep": 60})
    pid = _running_pid(d, task_id)

    done = _ctl(d, "stop", "sleeper")
    assert done.returncode == 0, done.stderr
    assert "1 task(s) back in inbox/" in done.stdout
    assert gone(pid)
    assert _last(d.wait_in(task_id, "inbox", timeout=2))["reason"] == f"agent stopped by {ME}"
    record = d.wait_agent("sleeper", lambda r: r["state"] == "STOPPED")
    assert record["stopped_by"]["user"] == ME and record["stopped_by"]["uid"] == os.geteuid()
    status = d.cli("status", str(d.ws))
    assert f"STOPPED (by {ME})" in status.stdout
    as_json = json.loads(d.cli("status", str(d.ws), "--json").stdout)
    sleeper = next(a for a in as_json["agents"] if a["name"] == "sleeper")
    assert sleeper["stopped_by"]["user"] == ME

    assert _ctl(d, "scale", "lines", "2").returncode == 0
    changed = _agents(d.pids)
    changed[0]["stop_grace"] = "0.4s"  # a new definition: the group is made anew
    d.write_manifest(changed)
    d.send(signal.SIGHUP)
    wait_until(lambda: "reload done" in d.stderr(), 10, "reload", daemon=d)
    assert "restarting agent sleeper (definition changed)" in d.stderr()
    assert d.wait_agent("lines", lambda r: len(r["pids"]) == 2)["concurrency"] == 2  # kept
    assert _ctl(d, "scale", "sleeper", "3").returncode == 0
    extra = d.drop("while stopped", tags=("exec",))
    wait_until(lambda: d.agent_record("sleeper").get("concurrency") == 3, 5, "scaled")
    assert d.folder_of(task_id) == "inbox" and d.folder_of(extra) == "inbox"
    record = d.agent_record("sleeper")
    assert record["state"] == "STOPPED" and record["stopped_by"]["user"] == ME

    done = _ctl(d, "start", "sleeper")
    assert done.returncode == 0, done.stderr
    assert d.wait_in(extra, "done")["result"] == {"slept": True}
    assert d.folder_of(task_id) == "active"  # the long one runs again
    assert d.agent_record("sleeper")["stopped_by"] is None


def test_restart_and_scale_a_worker(control_daemon):
    d = control_daemon
    task_id = d.drop("long", tags=("work",), context={"sleep": 60})
    pid = _running_pid(d, task_id)

    done = _ctl(d, "restart", "lines", "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and reply["details"]["requeued"] == [task_id]
    new_pids = reply["details"]["agents"]["lines"]["pids"]
    assert gone(pid) and new_pids and pid not in new_pids
    again = _running_pid_after(d, task_id, pid)  # back in inbox/, then taken by the new one
    assert again in new_pids
    back = next(e for e in d.ds.get_task(task_id).history if e.get("released"))
    assert back["reason"] == f"agent restarted by {ME}"

    assert _ctl(d, "scale", "lines", "3").returncode == 0
    d.wait_agent("lines", lambda r: len(r["pids"]) == 3 and r["state"] == "RUNNING",
                 what="three workers")
    assert d.cli("cancel", str(d.ws), task_id).returncode == 0
    assert _ctl(d, "scale", "lines", "1").returncode == 0
    d.wait_agent("lines", lambda r: len(r["pids"]) == 1, what="one worker")
    quick = d.drop("quick", tags=("work",))
    assert d.wait_in(quick, "done")["result"]["pid"] == d.agent_record("lines")["pids"][0]


def test_refusals_malformed_requests_and_timeouts(control_daemon):
    d = control_daemon
    unknown = _ctl(d, "restart", "nosuch")
    assert unknown.returncode == 1 and "unknown agent 'nosuch'" in unknown.stderr
    assert _ctl(d, "scale", "lines", "0").returncode == 2

    control = d.ws / CONTROL
    (control / "aaaa1.json").write_bytes(b"{not json")
    hand = {"dropsite_control": 1, "id": "aaaa2", "verb": "scale", "agent": "lines",
            "count": 0, "user": "mallory"}
    (control / "aaaa2.json").write_bytes(json_rules.dumps(hand))
    os.chown(control / "aaaa2.json", 65534, 65534)
    (control / "aaaa3.json").symlink_to("/etc/passwd")
    (control / "not a request").write_text("x")
    replies = [wait_until(lambda n=n: _reply(d, n), 5, f"reply {n}", daemon=d)
               for n in ("aaaa1", "aaaa2", "aaaa3")]
    assert [r["ok"] for r in replies] == [False, False, False]
    assert "aaaa1.json: not JSON" in replies[0]["message"]
    assert replies[1]["code"] == "bad_count" and "count:" in replies[1]["message"]
    assert replies[1]["by"] == {"user": pwd.getpwuid(65534).pw_name, "uid": 65534}
    assert "symbolic link" in replies[2]["message"]
    wait_until(lambda: not (control / "not a request").exists(), 5, "stray removed", daemon=d)
    assert d.alive() and _ctl(d, "start", "all").returncode == 0

    os.kill(d.proc.pid, signal.SIGSTOP)  # alive (it holds its lock) but answers nothing
    try:
        late = _ctl(d, "stop", "sleeper", "--timeout", "0.5")
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert late.returncode == 124 and "timed out after 0.5s" in late.stderr
    assert "withdrawn" in late.stderr
    assert d.agent_record("sleeper")["state"] == "RUNNING"  # a withdrawn request never runs

    if os.geteuid() == 0:  # another user, who may read the workspace but not write it
        with _reachable_by_others(d.ws):
            code, err = _cli_as(65534, "stop", "sleeper", "-w", str(d.ws))
        assert code == 1 and "cannot write" in err and "uid 65534" in err, err
        assert len(err.strip().splitlines()) == 1

    assert d.stop() == 0
    none = _ctl(d, "restart", "lines")
    assert none.returncode == 3 and "no dropsited is running" in none.stderr
    held = d.drop("held by a dead process", to="nobody")
    d.ds.claim("nobody", held, holder_pid=_dead_pid())
    refused = d.cli("cancel", str(d.ws), held)
    assert refused.returncode == 3 and "dropsited release" in refused.stderr


def _reply(d, request_id: str) -> dict | None:
    path = d.ws / CONTROL / reply_file(request_id)
    return json.loads(path.read_text()) if path.exists() else None


@contextmanager
def _reachable_by_others(path):
    """Let other users traverse the folders above `path` (pytest makes its base 0700)."""
    changed = []
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            changed.append((folder, mode))
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)


def _cli_as(uid: int, *args: str) -> tuple[int, str]:
    """Run the real CLI as another user: a forked child (the interpreter lives under
    /root, which that user cannot read) drops to `uid` and calls the command group."""
    import traceback

    from dropsited.cli import main  # imported here: the child may not read /root
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.dup2(write, 2)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (pytest's capture is no fd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            main.main(list(args), standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as stream:
        err = stream.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_poll_mode_takes_requests_within_a_poll(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    with daemon_session(tmp_path) as make:
        d = make(_agents(pids), "--poll", "0.2")
        d.pids = pids
        task_id = d.drop("long", tags=("exec",), context={"sleep": 60})
        pid = _running_pid(d, task_id)
        done = d.cli("cancel", str(d.ws), task_id, "--timeout", "5")
        assert done.returncode == 0, done.stderr
        assert gone(pid) and d.folder_of(task_id) == "failed"
        assert _ctl(d, "stop", "lines", "--timeout", "5").returncode == 0
        assert d.agent_record("lines")["state"] == "STOPPED"
        assert d.stop() == 0
