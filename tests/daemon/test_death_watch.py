"""The death watch (issue 3 section 3): agents die with the daemon, SIGKILL included,
without a setpriv exec in front of every exec task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from harness import agent, gone, wait_until

from dropsited.daemon.containment.death_watch import DeathWatch
from dropsited.daemon.containment.process_tree import MARKER_ENV

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


# A stand-in daemon: starts a watch, spawns agents as the daemon would, then waits to
# be SIGKILLed. Agent "bare" has no marker (env -i), "marked" is not registered,
# "forgotten" was registered and forgotten (a reaped agent whose pid was reused).
FAKE_DAEMON = """
import os, subprocess, sys, time
from dropsited.daemon.containment.death_watch import DeathWatch
marker = sys.argv[1]
watch = DeathWatch(marker)
watch.start()
def agent(env):
    return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True).pid
bare = agent({"PATH": os.environ["PATH"]})
marked = agent({**os.environ, "DROPSITED_DAEMON": marker})
forgotten = agent({"PATH": os.environ["PATH"]})
watch.register(bare)
watch.register(forgotten)
watch.forget(forgotten)
print(bare, marked, forgotten, watch.pid, flush=True)
time.sleep(60)
"""


def test_a_sigkilled_daemon_s_watch_kills_registered_groups_and_marked_processes(
        marker: str) -> None:
    daemon = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, marker], stdout=subprocess.PIPE,
                              text=True)
    bare, marked, forgotten, watch = map(int, daemon.stdout.readline().split())
    try:
        daemon.kill()
        daemon.wait()
        wait_until(lambda: gone(bare) and gone(marked), 3, "agents gone with the daemon")
        wait_until(lambda: gone(watch), 3, "watch exited")
        assert not gone(forgotten)  # a forgotten pid may belong to someone else by now
    finally:
        for pid in (bare, marked, forgotten, watch):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_dismissed_watch_exits_without_killing(marker: str) -> None:
    watch = DeathWatch(marker)
    watch.start()
    mine = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER_ENV: marker},
                            start_new_session=True)
    watch.register(mine.pid)
    try:
        started = time.monotonic()
        watch.dismiss()
        assert watch.popen.returncode == 0
        assert time.monotonic() - started < 2
        time.sleep(0.1)
        assert mine.poll() is None
    finally:
        mine.kill()
        mine.wait()


def test_a_watch_that_cannot_run_is_an_oserror_and_stays_down(marker: str) -> None:
    watch = DeathWatch(marker, python="/bin/false")
    with pytest.raises(OSError, match="death watch"):
        watch.start()
    assert not watch.up


def test_a_replaced_watch_is_told_every_agent_still_registered(marker: str) -> None:
    watch = DeathWatch(marker)
    watch.start()
    agent = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"]},
                             start_new_session=True)
    try:
        watch.register(agent.pid)
        first = watch.popen
        first.kill()
        first.wait()
        assert not watch.running()
        watch.register(agent.pid + 1000000)  # a write to the dead watch: no error
        watch.forget(agent.pid + 1000000)
        watch.start()
        assert watch.up and watch.popen is not first
        os.close(watch._write_fd)  # what the kernel does when the daemon dies
        watch._write_fd = None
        assert agent.wait(timeout=5) == -signal.SIGKILL
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        watch.dismiss()


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
    watch.start()  # returns once the watch said it is ready
    assert ignored_signals(watch.pid) >= {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    assert os.getsid(watch.pid) == watch.pid
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
