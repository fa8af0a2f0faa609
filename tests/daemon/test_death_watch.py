"""The death watch (issue 3 section 3): agents die with the daemon, SIGKILL included,
without a setpriv exec in front of every exec task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dropsited.daemon.death_watch import DeathWatch
from dropsited.daemon.process_tree import MARKER_ENV

from .daemon_harness import agent, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_GET_PDEATHSIG and /proc are Linux")

# Prints the parent-death signal the agent was started with (PR_GET_PDEATHSIG = 2).
PDEATHSIG_PROBE = """
import ctypes, json, sys
sig = ctypes.c_int(-1)
ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)
if len(sys.argv) < 2:  # exec mode: the result on stdout
    print(json.dumps({"pdeathsig": sig.value}))
    sys.exit(0)
for line in sys.stdin:  # worker mode: one reply per task line
    print(json.dumps({"id": json.loads(line)["id"], "status": "done",
                      "result": {"pdeathsig": sig.value}}), flush=True)
"""

@pytest.fixture
def marker(tmp_path: Path) -> str:
    return f"{tmp_path}:{uuid.uuid4().hex}"


def marked_sleeper(marker: str, *, new_session: bool = True) -> subprocess.Popen:
    """A process that carries `marker` as a daemon's agent would, in its own session."""
    return subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER_ENV: marker},
                            start_new_session=new_session)


def test_the_watch_kills_marked_processes_when_the_daemon_end_of_the_pipe_closes(
        marker: str) -> None:
    watch = DeathWatch(marker)
    watch.start()
    mine = marked_sleeper(marker)
    other = marked_sleeper(marker + "-another-daemon")
    try:
        watch._close_pipe()  # what the kernel does when the daemon dies, however it dies
        assert mine.wait(timeout=5) == -9
        assert watch.popen.wait(timeout=5) == 0
        time.sleep(0.1)
        assert other.poll() is None  # another daemon's agent is not this watch's business
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()


def test_a_dismissed_watch_exits_without_killing(marker: str) -> None:
    watch = DeathWatch(marker)
    watch.start()
    mine = marked_sleeper(marker)
    try:
        started = time.monotonic()
        watch.dismiss()
        assert watch.popen.returncode == 0
        assert time.monotonic() - started < 2
        assert mine.poll() is None
    finally:
        mine.kill()
        mine.wait()


def ignored_signals(pid: int) -> set[int]:
    """The signals a process ignores, from the SigIgn mask in /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    return set()


def test_the_watch_ignores_the_signals_a_terminal_or_a_service_manager_sends(
        marker: str) -> None:
    watch = DeathWatch(marker)
    watch.start()
    wait_until(lambda: ignored_signals(watch.pid) >= {signal.SIGINT, signal.SIGTERM, signal.SIGHUP},
               5, "watch past start-up, ignoring the signals")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        watch.popen.send_signal(sig)
    time.sleep(0.2)
    assert watch.running()
    watch.dismiss()
    assert not watch.running()


def test_exec_agents_skip_pdeathsig_while_the_watch_runs_long_lived_agents_keep_it(
        run_daemon) -> None:
    """The point of the watch: no setpriv exec per exec task. Workers and services are
    spawned once, and keep PR_SET_PDEATHSIG as a second guard."""
    d = run_daemon([
        agent("exec", [sys.executable, "-c", PDEATHSIG_PROBE]),
        agent("worker", [sys.executable, "-c", PDEATHSIG_PROBE, "worker"], mode="worker"),
    ])
    assert d.wait_in(d.drop(to="exec"), "done")["result"] == {"pdeathsig": 0}
    assert d.wait_in(d.drop(to="worker"), "done")["result"] == {"pdeathsig": 9}
    assert d.stop() == 0
