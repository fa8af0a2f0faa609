"""Issue 11: the 17 ways a stranger's file or an agent's output broke the daemon's
guarantees, one regression test each (named test_fNN_...), plus 0.1.0's own test-suite
habit of claiming a retried task by id. Every test here failed on the tree before the
fix (checked against commit efc3245)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from harness import DROPSITED, agent, gone, py, wait_until, write_script

from dropsited import DropSite, TaskBuilder
from dropsited.protocol import DropSiteError
from dropsited.protocol.holder import SEP, this_host

GRACE = ("--corrupt-grace", "0.3")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"

ECHO = py("import sys; sys.stdin.read(); print('{\"ok\": 1}')")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DROPSITED, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]


def quarantined_names(ws: Path) -> set[str]:
    q = ws / "quarantine"
    return {p.name for p in q.iterdir() if not p.name.endswith(".reason")} if q.exists() else set()


# -- 1. a task file that killed the daemon for good -------------------------------------------
def test_f01_a_huge_integer_neither_stops_the_daemon_nor_its_restart(run_daemon) -> None:
    d = run_daemon([agent("echo", ECHO)], *GRACE, start=False)
    (d.ws / "inbox" / "huge.json").write_text('{"title": "x", "priority": ' + "9" * 5000 + "}")
    d.start()  # start-up sweeps it: used to die here, at every restart
    good = d.drop("good")
    d.wait_in(good, "done")
    wait_until(lambda: "huge.json" in quarantined_names(d.ws), 10, "huge.json quarantined")
    assert d.proc.poll() is None
    (d.ws / "inbox" / "huge2.json").write_text('{"title": "x", "priority": ' + "9" * 5000 + "}")
    for args in (("inbox", str(d.ws)), ("list", str(d.ws), "inbox"), ("stats", str(d.ws))):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        no_traceback(result)
    assert d.stop() == 0


# -- 2. NaN / Infinity / 1e400 ------------------------------------------------------------------
def test_f02_non_finite_numbers_are_quarantined_and_the_drain_still_ends(run_daemon) -> None:
    d = run_daemon([agent("echo", ECHO)], *GRACE)
    values = {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "big": "1e400"}
    for name, value in values.items():
        (d.ws / "inbox" / f"{name}.json").write_text('{"title": "x", "context": {"v": ' + value + "}}")
    good = d.drop("good")
    d.wait_in(good, "done")
    for name in values:
        record = d.ws / "quarantine" / f"{name}.json.reason"
        wait_until(lambda r=record: r.exists() and r.read_text().endswith("\n"), 10,
                   f"{name}.json quarantined with its reason")
        error = json.loads(record.read_text())["error"]
        assert any(word in error for word in ("NaN", "Infinity", "infinite")), error
    assert d.stop() == 0  # SIGTERM finishes the drain
    d.start()  # and the next start does not die in recover()
    assert d.stop() == 0


# -- 3. a result that can never be written ------------------------------------------------------
def test_f03_an_unstorable_exec_result_is_a_counted_failed_attempt(run_daemon, tmp_path) -> None:
    runs = tmp_path / "runs"
    d = run_daemon([agent("nan", py(f"import sys; sys.stdin.read(); open({str(runs)!r}, 'a')"
                                    ".write('x'); print('{\"x\": NaN}')"))])
    task = d.drop("t", max_retries=2)
    doc = d.wait_in(task, "failed", timeout=20)
    assert runs.read_text() == "xxx"  # max_retries 2: three attempts, not 91
    assert "could not be stored" in doc["history"][-1]["error"]
    assert d.stop() == 0


def test_f03_a_worker_replying_infinity_fails_within_its_attempts(run_daemon) -> None:
    worker = ("import json, sys\n"
              "for line in sys.stdin:\n"
              "    t = json.loads(line)\n"
              "    print('{\"id\": \"%s\", \"status\": \"done\", \"result\": {\"v\": Infinity}}'"
              " % t['id'], flush=True)\n")
    d = run_daemon([agent("w", py(worker), mode="worker")])
    task = d.drop("t", max_retries=1)
    doc = d.wait_in(task, "failed", timeout=20)
    assert [e["status"] for e in doc["history"]].count("retry") == 1
    assert d.stop() == 0


def test_f03_a_missing_done_folder_fails_the_task_within_its_attempts(run_daemon) -> None:
    d = run_daemon([agent("echo", ECHO)])
    (d.ws / "done").rmdir()
    task = d.drop("t", max_retries=1)
    doc = d.wait_in(task, "failed", timeout=20)
    assert "could not be stored" in doc["history"][-1]["error"]
    assert d.stop() == 0


# -- 4. symlinked workspace parts -----------------------------------------------------------
@pytest.mark.parametrize("part", ["quarantine", "inbox", "done", ".dropsited", "agents"])
def test_f04_a_symlinked_folder_is_refused_at_start(run_daemon, tmp_path, part) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text('{"title": "not yours"}')
    d = run_daemon([agent("echo", ECHO)], start=False)
    DropSite(d.ws)
    target = d.ws / part
    if target.exists():
        target.rename(tmp_path / f"old-{part.strip('.')}")
    target.symlink_to(outside)
    d.start(wait=False)
    assert d.proc.wait(timeout=15) == 1
    err = d.stderr()
    assert f"{target}: is a symbolic link" in err and "Traceback" not in err
    assert sorted(p.name for p in outside.iterdir()) == ["keep.json"]


def test_f04_a_link_planted_as_quarantine_while_running_is_not_followed(run_daemon, tmp_path) -> None:
    outside = tmp_path / "rootonly"
    outside.mkdir()
    d = run_daemon([agent("echo", ECHO)], *GRACE, "--poll", "0.2")  # a rescan every 0.2 s
    (d.ws / "quarantine").mkdir(exist_ok=True)
    (d.ws / "quarantine").rmdir()
    (d.ws / "quarantine").symlink_to(outside)
    (d.ws / "inbox" / "zz-evil.sh").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    time.sleep(2.0)  # several grace periods and rescans
    assert list(outside.iterdir()) == []
    assert (d.ws / "inbox" / "zz-evil.sh").exists()  # left where it was, not moved out
    good = d.drop("good")
    d.wait_in(good, "done")
    assert d.stop() == 0


# -- 5. agent logs take the umask and follow links ------------------------------------------
def test_f05_agent_logs_have_fixed_modes_and_never_follow_a_link(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    ws = tmp_path / "ws"
    DropSite(ws)
    (ws / "agents" / "logs").mkdir(mode=0o755)
    (ws / "agents" / "logs" / "echo.log").symlink_to(victim)
    manifest = tmp_path / "agents.yaml"
    manifest.write_text(json.dumps({"workspace": "ws", "agents": [agent("echo", ECHO)]}))
    old = os.umask(0)
    try:
        proc = subprocess.Popen([DROPSITED, "up", "-c", str(manifest), "--fast"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    finally:
        os.umask(old)
    try:
        ds = DropSite(ws, durable=False)
        tid = ds.submit(TaskBuilder("t", "test").build())
        wait_until(lambda: ds.locate(tid) and ds.locate(tid).folder == "done", 15, "task done")
        log = ws / "agents" / "logs" / "echo.log"
        assert not log.is_symlink() and victim.read_text() == "precious\n"
        assert stat.S_IMODE(log.stat().st_mode) == 0o640
        for path in (ws / "agents" / "logs", ws / "agents" / "echo.json"):
            assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


# -- 6. a reused id destroyed a finished task ------------------------------------------------
def test_f06_a_reused_id_is_refused_and_never_replaces_a_finished_task(ws: Path) -> None:
    ds = DropSite(ws)
    tid = ds.submit(TaskBuilder("first", "me").with_id("job-1").build())
    ds.complete(ds.claim_next("w"), {"answer": 42})
    with pytest.raises(DropSiteError, match="already exists"):
        ds.submit(TaskBuilder("second", "me").with_id("job-1").build())
    # A foreign writer puts the same id into inbox/ anyway; its completion must not
    # rename over done/job-1.json.
    (ws / "inbox" / "job-1.json").write_text('{"title": "again"}')
    task = ds.claim_next("w")
    with pytest.raises(DropSiteError):
        ds.complete(task, {"answer": 0})
    assert json.loads((ws / "done" / f"{tid}.json").read_text())["result"] == {"answer": 42}


# -- 7. routing: a catch-all takes only what no other agent declares ----------------------
def test_f07_a_catch_all_agent_leaves_declared_tags_to_their_agent(run_daemon, tmp_path) -> None:
    who = tmp_path / "who"
    who.mkdir()
    record = f"import os, sys; sys.stdin.read(); open(os.path.join({str(who)!r}, " \
             "os.environ['DROPSITE_TASK_ID']), 'w').write(os.environ['DROPSITE_AGENT'])"
    d = run_daemon([agent("anything", py(record), concurrency=4),
                    agent("payroll", py(record), tags=["payroll"])])
    payroll = [d.drop(f"pay {i}", tags=("payroll",)) for i in range(8)]
    other = [d.drop(f"misc {i}", tags=("misc",)) for i in range(4)]
    for tid in payroll + other:
        d.wait_in(tid, "done", timeout=20)
    assert {(who / t).read_text() for t in payroll} == {"payroll"}
    assert {(who / t).read_text() for t in other} == {"anything"}
    assert d.stop() == 0


# -- 8. a worker's reply id was not checked ----------------------------------------------
def test_f08_a_reply_for_another_id_never_completes_the_current_task(run_daemon) -> None:
    twice = ("import json, sys\n"
             "for line in sys.stdin:\n"
             "    t = json.loads(line)\n"
             "    r = json.dumps({'id': t['id'], 'status': 'done', 'result': {'for': t['id']}})\n"
             "    print(r); print(r, flush=True)\n")
    d = run_daemon([agent("w", py(twice), mode="worker")])
    ids = [d.drop(f"t{i}") for i in range(5)]
    for tid in ids:
        assert d.wait_in(tid, "done", timeout=20)["result"] == {"for": tid}
    assert "not the current task" in d.log_text("w")
    assert d.stop() == 0


# -- 9. a worker that does not read stdin never timed out ---------------------------------
def test_f09_a_worker_that_never_reads_its_stdin_times_out(run_daemon) -> None:
    d = run_daemon([agent("deaf", py("import time; time.sleep(3600)"), mode="worker",
                          timeout=1, start_seconds=0)])
    task = d.ds.submit(TaskBuilder("big", "test").describe("x" * 300_000).max_retries(0).build())
    doc = d.wait_in(task, "failed", timeout=20)
    assert "timeout" in doc["history"][-1]["error"]
    assert d.stop() == 0


# -- 10. exec stdout was unbounded ---------------------------------------------------------
def test_f10_a_flood_on_stdout_keeps_the_daemon_small_and_fails_the_attempt(run_daemon) -> None:
    flood = py("import sys; sys.stdin.read(); b = b'x' * (1 << 20)\n"
               "for _ in range(120): sys.stdout.buffer.write(b)")
    d = run_daemon([agent("flood", flood, timeout=60)])
    task = d.drop("t", max_retries=0)
    proc = psutil.Process(d.proc.pid)
    peak = 0
    deadline = time.monotonic() + 60
    while d.folder_of(task) != "failed" and time.monotonic() < deadline:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.02)
    doc = d.wait_in(task, "failed", timeout=5)
    assert "over the size limit" in doc["history"][-1]["error"]
    assert peak < 120 * 1024 * 1024, f"daemon RSS reached {peak / 2**20:.0f} MiB"
    assert d.stop() == 0


# -- 11. the CLI completed a task a live agent held -----------------------------------------
def test_f11_cli_refuses_to_move_a_live_holders_task_unless_forced(run_daemon) -> None:
    d = run_daemon([agent("slow", py("import sys, time; sys.stdin.read(); time.sleep(30)"))])
    task = d.drop("t")
    d.wait_in(task, "active")
    result = d.cli("complete", str(d.ws), task, "--result", "{}")
    assert result.returncode == 1 and "held by slow" in result.stderr, result.stderr
    assert d.folder_of(task) == "active"
    for verb in (("fail", "--error", "x"), ("block", "--reason", "x"), ("release",)):
        assert d.cli(verb[0], str(d.ws), task, *verb[1:]).returncode == 1
    forced = d.cli("complete", str(d.ws), task, "--result", '{"by": "hand"}', "--force")
    assert forced.returncode == 0, forced.stderr
    doc = d.wait_in(task, "done")
    assert doc["history"][-1].get("forced_by") and doc["result"] == {"by": "hand"}
    d.stop(signal.SIGINT)


def test_f11_a_script_that_claimed_with_its_own_pid_may_complete(ws: Path) -> None:
    DropSite(ws)
    script = (f"set -e\nid=$({DROPSITED} claim {ws} --pid $$ --json | "
              f"{sys.executable} -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')\n"
              f"{DROPSITED} complete {ws} \"$id\"\n")
    tid = DropSite(ws).submit(TaskBuilder("mine", "me").build())
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert DropSite(ws).locate(tid).folder == "done"


# -- 12. a CR in a path injected lines into a unit ------------------------------------------
def test_f12_a_carriage_return_cannot_reach_a_service_file(tmp_path) -> None:
    from dropsited.service.render import ServiceSpec, render
    evil = "/srv/ws\rExecStartPre=/bin/evil"
    spec = ServiceSpec(program=("/usr/bin/dropsited",), manifest="/srv/agents.yaml",
                       workspace=evil, working_directory="/srv", writable_paths=(evil,),
                       log_dir="/srv/logs", path_env="/usr/bin:/bin", user="root")
    for platform in ("systemd", "launchd", "pm2"):
        with pytest.raises(ValueError, match="carriage return"):
            render(platform, spec)
    manifest = tmp_path / "agents.yaml"
    manifest.write_text("workspace: ws\nagents:\n  - {name: a, command: [/bin/true]}\n")
    result = run_cli("service", "install", "--print", "-c", str(manifest), "-w",
                     str(tmp_path / "w\rExecStartPre=/bin/evil"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ExecStartPre" not in result.stdout


# -- 13. task text reached the terminal raw ----------------------------------------------
def test_f13_listings_show_control_characters_escaped(ws: Path) -> None:
    ds = DropSite(ws)
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eTitle"
    tid = ds.submit(TaskBuilder(evil, "\x1b[31mme").tag("\x1b[1mtag").build())
    (ws / "inbox" / "forged.json").write_text(json.dumps(
        {"title": "ok", "assigned_to": "bob\nfake-row  P1  forged"}))
    for args in (("list", str(ws), "inbox"), ("inbox", str(ws)), ("show", str(ws), tid),
                 ("list", str(ws), "inbox", "--json")):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        for raw in ("\x1b", "\x9b", "\x07", "\u202e"):
            assert raw not in result.stdout, (args, result.stdout)
    rows = run_cli("list", str(ws), "inbox").stdout.strip().splitlines()
    assert not any(r.startswith("fake-row") for r in rows)
    assert len(rows) == 1 + len(ds.list_tasks("inbox"))


def test_f13_review_shows_a_question_escaped(ws: Path) -> None:
    ds = DropSite(ws)
    ds.submit(TaskBuilder("\x1b[2Jq", "me").build())
    task = ds.claim_next("w")
    ds.request_feedback(task, {"question": "ok?\x1b]52;c;cHduZWQ=\x07", "options": ["\x1b[1my"]})
    result = subprocess.run([DROPSITED, "review", str(ws)], input="s\n", capture_output=True,
                            text=True, timeout=30)
    assert "\x1b" not in result.stdout and "\\x1b" in result.stdout, result.stdout


# -- 14. forged and deeply nested quarantine records --------------------------------------
def test_f14_quarantine_records_cannot_be_forged_nor_crash_the_listings(ws: Path) -> None:
    ds = DropSite(ws, corrupt_grace=0)
    forged = {"file": "inbox/payroll.json", "quarantined_as": "payroll.json",
              "error": "forged", "size": 1, "at": "2020-01-01T00:00:00+00:00"}
    (ws / "inbox" / "x.reason").write_text(json.dumps(forged))
    ds.sweep_inbox()
    records = ds.quarantined()
    assert all(r["error"] != "forged" for r in records), records
    (ws / "quarantine" / "deep.reason").write_text("[" * 50_000 + "]" * 50_000)
    (ws / "quarantine" / "list.reason").write_text("[1, 2]")
    for args in (("stats", str(ws)), ("list", str(ws), "quarantine"), ("status", str(ws)),
                 ("list", str(ws), "quarantine", "--json")):
        result = run_cli(*args)
        assert result.returncode in (0, 3), (args, result.stderr)  # status: 3, no daemon
        no_traceback(result)


# -- 15. the writer accepted what the reader refuses -------------------------------------
def test_f15_submit_refuses_what_a_reader_would_quarantine(ws: Path) -> None:
    ds = DropSite(ws)
    for build in (lambda: TaskBuilder("big", "me").describe("x" * (5 << 20)).build(),
                  lambda: TaskBuilder("nan", "me").context({"v": float("nan")}).build(),
                  lambda: TaskBuilder("deep", "me").context(_nested(150)).build(),
                  lambda: TaskBuilder("int", "me").context({"v": 2**70}).build(),
                  lambda: TaskBuilder("sur", "me").context({"v": "\ud800"}).build()):
        with pytest.raises(DropSiteError):
            ds.submit(build())
    assert os.listdir(ws / "inbox") == []
    deep = "[" * 150 + "]" * 150
    result = run_cli("drop", str(ws), "--from", "me", "--title", "t", "--payload",
                     '{"v": ' + deep + "}")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(ws / "inbox") == []


def test_f15_ids_that_name_paths_are_refused_on_read(ws: Path) -> None:
    ds = DropSite(ws, corrupt_grace=0)
    (ws / "inbox" / "a.json").write_text('{"title": "x", "parent_id": "../../etc/passwd"}')
    (ws / "inbox" / "b.json").write_text('{"title": "x", "context": {"_depends_on": ["../../etc/passwd"]}}')
    assert ds.claim_next("w") is None
    ds.sweep_inbox()
    assert quarantined_names(ws) == {"a.json", "b.json"}


def test_f15_a_read_only_workspace_is_one_line_not_a_traceback(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    ws = tmp_path / "ws"
    ws.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ws)]).returncode:
        pytest.skip("mount -t tmpfs refused here")
    try:
        DropSite(ws)
        subprocess.run(["mount", "-o", "remount,ro", str(ws)], check=True)
        manifest = tmp_path / "agents.yaml"
        manifest.write_text("workspace: ws\nagents:\n  - {name: a, command: [/bin/true]}\n")
        result = subprocess.run([DROPSITED, "up", "-c", str(manifest)], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 1
        no_traceback(result)
        assert "read-only" in result.stderr, result.stderr
    finally:
        subprocess.run(["umount", "-l", str(ws)], check=False)


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# -- 16. forged temp files stayed for ever -------------------------------------------------
def test_f16_forged_temp_files_are_recovered(ws: Path) -> None:
    ds = DropSite(ws)
    task = TaskBuilder("forged", "me").with_id("forged-1").build()
    task.log("inbox")
    pid1 = ws / "inbox" / f".forged-1{SEP}{this_host()}{SEP}1{SEP}0.tmp"
    pid1.write_bytes(task.to_json())
    elsewhere = ws / "inbox" / f".forged-2{SEP}other-host{SEP}77{SEP}5.tmp"
    elsewhere.write_text("{}")
    hour_ago = time.time() - 7200
    os.utime(elsewhere, (hour_ago, hour_ago))
    ds.recover()
    assert not pid1.exists() and not elsewhere.exists()
    assert ds.locate("forged-1").folder == "inbox"


# -- 17. cleanup gaps ----------------------------------------------------------------------
def test_f17_a_setsid_env_i_grandchild_dies_with_a_sigkilled_daemon(run_daemon, tmp_path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = write_script(tmp_path / "spawn.sh",
                          "#!/bin/bash\ncat >/dev/null\n"
                          f"setsid env -i /bin/sh -c 'echo $$ > {pidfile}; exec sleep 300' &\n"
                          "sleep 300\n")
    d = run_daemon([agent("spawner", [str(script)])])
    d.drop("t")
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 15,
                         "grandchild pid"))
    assert not gone(pid)
    d.proc.kill()
    d.proc.wait(timeout=5)
    wait_until(lambda: gone(pid), 10, "the setsid env -i grandchild to die")


def test_f17_removing_dot_dropsited_does_not_let_a_second_daemon_in(run_daemon) -> None:
    d = run_daemon([agent("echo", ECHO)])
    subprocess.run(["rm", "-rf", str(d.ws / ".dropsited")], check=True)
    second = subprocess.run([DROPSITED, "up", "-c", str(d.manifest)], capture_output=True,
                            text=True, timeout=30, cwd=d.tmp_path)
    assert second.returncode == 1 and "already running" in second.stderr, second.stderr
    wait_until(lambda: (d.ws / ".dropsited" / "daemon.json").exists(), 15, "daemon.json again")
    assert d.stop() == 0


# -- DropSite 0.1.0's own test suite ---------------------------------------------------------
def test_an_explicit_claim_by_id_takes_a_task_in_backoff(ws: Path) -> None:
    ds = DropSite(ws)
    tid = ds.submit(TaskBuilder("x", "me").build())
    task = ds.claim("worker", tid)
    ds.fail(task, "boom")
    assert ds.claim_next("worker") is None  # automatic selection honours the backoff
    again = ds.claim("worker", tid)  # 0.1.0's tests claim the retried task at once
    assert again is not None and again.retry_count == 1
    ds.fail(again, "boom again")


@pytest.mark.parametrize("call", ["complete", "fail", "release", "block", "request_feedback"])
def test_api_calls_given_none_refuse_it_clearly(ws: Path, call: str) -> None:
    ds = DropSite(ws)
    args = {"complete": (None,), "fail": (None, "x"), "release": (None,), "block": (None, "x"),
            "request_feedback": (None, "q?")}[call]
    with pytest.raises(DropSiteError, match="needs a Task") as caught:
        getattr(ds, call)(*args)
    assert isinstance(caught.value, TypeError)
