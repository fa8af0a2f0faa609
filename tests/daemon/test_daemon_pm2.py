"""pm2 for real (issue 4): pm2 runs `dropsited up`; SIGKILL the daemon; pm2 restarts it;
tasks dropped before and after are all done.

pm2 comes from the npm registry: `$PM2_BIN`, else `.venv/pm2/node_modules/.bin/pm2`
(the Makefile installs it there); the test is skipped, saying so, when neither exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from harness import DROPSITED, RunningDaemon, agent, kill_leftovers, wait_until

REPO = Path(__file__).resolve().parents[2]
ECOSYSTEM = """module.exports = {{ apps: [{{
  name: "dropsited", script: {script}, args: {args}, interpreter: "none", cwd: {cwd},
  autorestart: true, restart_delay: 100, kill_timeout: 5000, treekill: false,
  out_file: {out}, error_file: {err},
}}] }};
"""


def pm2_binary() -> str | None:
    candidate = os.environ.get("PM2_BIN") or str(REPO / ".venv" / "pm2" / "node_modules" / ".bin" / "pm2")
    return candidate if os.access(candidate, os.X_OK) else None


@pytest.fixture
def pm2(tmp_path: Path):
    binary = pm2_binary()
    if binary is None:
        pytest.skip("pm2 not installed: set PM2_BIN or run `npm install --prefix .venv/pm2 pm2` "
                    "(the Makefile's pm2 target)")
    env = {**os.environ, "PM2_HOME": str(tmp_path / "pm2home")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                              timeout=60, cwd=tmp_path)

    try:
        yield run
    finally:
        run("kill")
        kill_leftovers(tmp_path)


def daemon_pid(pm2) -> int | None:
    listed = pm2("jlist")
    try:
        apps = json.loads(listed.stdout[listed.stdout.find("["):])
    except ValueError:
        return None
    pids = [a.get("pid") for a in apps if a.get("name") == "dropsited"]
    return pids[0] if pids and pids[0] else None


@pytest.mark.pm2
def test_pm2_restarts_a_sigkilled_daemon_and_no_task_is_lost(pm2, tmp_path: Path) -> None:
    d = RunningDaemon(tmp_path, [agent("work", "sleep 0.2; echo done-by-$$", concurrency=2)],
                      [], None, None)
    args = ["up", "-c", str(d.manifest), "--grace", "1", "--retry-base", "0.05", "--fast"]
    eco = tmp_path / "ecosystem.config.js"
    eco.write_text(ECOSYSTEM.format(script=json.dumps(DROPSITED), args=json.dumps(args),
                                    cwd=json.dumps(str(tmp_path)),
                                    out=json.dumps(str(tmp_path / "pm2.out")),
                                    err=json.dumps(str(tmp_path / "pm2.err"))))
    started = pm2("start", str(eco))
    assert started.returncode == 0, started.stdout + started.stderr

    def running_daemon(not_pid: int | None = None) -> int | None:
        record = d.daemon_record()
        pid = daemon_pid(pm2)
        if pid and pid != not_pid and record.get("pid") == pid and record.get("state") == "running":
            return pid
        return None

    first = wait_until(running_daemon, 20, "pm2 started dropsited")
    before = [d.drop(f"before {i}") for i in range(4)]
    d.wait_in(before[0], "active")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: running_daemon(not_pid=first), 20, "pm2 restarted dropsited")
    assert second != first
    after = [d.drop(f"after {i}") for i in range(4)]
    for task_id in before + after:
        task = d.wait_in(task_id, "done", timeout=15)
        assert task["result"]["output"].startswith("done-by-")
        assert d.folders_holding(task_id) == ["done"]
    stopped = pm2("stop", "dropsited")
    assert stopped.returncode == 0
    wait_until(lambda: d.daemon_record().get("state") == "stopped", 10, "daemon drained on stop")
