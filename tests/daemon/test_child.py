"""ChildProcess against real processes: exit codes, group stops, escaping grandchildren."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from harness import wait_until

from dropsited.daemon.containment.process_tree import CHILD_TAG_ENV, is_alive
from dropsited.daemon.supervision.child import PIPE, ChildProcess

REPO = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def dead(proc: psutil.Process) -> bool:
    return not is_alive(proc)


def read_pid(path: Path, timeout=5.0) -> psutil.Process:
    """Wait for a child to write a pid into ``path``; return a handle on it."""
    assert wait_until(lambda: path.exists() and path.read_text().strip(), timeout)
    return psutil.Process(int(path.read_text()))


@pytest.fixture
def spawn():
    """Spawn ChildProcesses and kill whatever is left of them after the test."""
    made: list[ChildProcess] = []
    strays: list[psutil.Process] = []

    def _spawn(argv, **kw):
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        child = ChildProcess.spawn(argv, **kw)
        made.append(child)
        return child

    _spawn.strays = strays
    yield _spawn
    for child in made:
        child.kill_tree()
        for stream in (child.popen.stdout, child.popen.stderr):
            if stream:
                stream.close()
    for proc in strays:
        if is_alive(proc):
            proc.kill()


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_exit_code_is_propagated(spawn):
    child = spawn(py("import sys; sys.exit(42)"))
    assert child.popen.wait(5) == 42
    assert child.exit_status() == (42, None)
    assert child.ran_for() >= 0


def test_death_by_signal_is_reported_as_signal(spawn):
    child = spawn(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    child.popen.wait(5)
    assert child.exit_status() == (None, signal.SIGKILL)


def test_running_child_has_no_exit_status_yet(spawn):
    child = spawn(["sleep", "30"])
    assert child.poll() is None
    assert child.exit_status() == (None, None)


def test_spawn_of_missing_program_raises(spawn, tmp_path):
    with pytest.raises(FileNotFoundError):
        spawn([str(tmp_path / "no-such-program")])


def test_child_gets_cwd_env_tag_and_own_group(spawn, tmp_path):
    code = """
        import os
        print(os.getcwd(), os.environ["GREETING"], os.environ["DROPSITED_CHILD"])
        print(os.getpgrp(), os.getsid(0))
    """
    child = spawn(py(code), cwd=tmp_path, env={"GREETING": "hi"}, stdout=PIPE)
    out, _ = child.popen.communicate(timeout=5)
    first, second = out.decode().splitlines()
    assert first.split() == [str(tmp_path), "hi", child.tag]
    assert second.split() == [str(child.pid), str(child.pid)]
    assert child.pgid == child.pid != os.getpgrp()
    assert "GREETING" not in os.environ and CHILD_TAG_ENV not in os.environ


def test_stop_blocking_sends_term_to_the_group(spawn):
    child = spawn(["sleep", "30"])
    start = time.monotonic()
    assert child.stop_blocking(signal.SIGTERM, grace=5.0) == -signal.SIGTERM
    assert time.monotonic() - start < 2.0


def test_child_ignoring_sigterm_is_killed_after_grace(spawn):
    code = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
    """
    child = spawn(py(code), stdout=PIPE)
    assert child.popen.stdout.readline() == b"ready\n"
    start = time.monotonic()
    assert child.stop_blocking(signal.SIGTERM, grace=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - start < 3.0


def test_non_blocking_stop(spawn):
    child = spawn(["sleep", "30"])
    child.begin_stop(signal.SIGTERM, grace=5.0)
    assert wait_until(child.stop_done, timeout=3.0)
    assert child.returncode == -signal.SIGTERM


def test_stop_done_needs_begin_stop(spawn):
    child = spawn(["sleep", "30"])
    with pytest.raises(RuntimeError):
        child.stop_done()


def test_background_grandchild_dies_with_the_group_after_leader_exit(spawn, tmp_path):
    pidfile = tmp_path / "gc.pid"
    child = spawn(["bash", "-c", f"sleep 1000 & echo $! > {pidfile}; exit 0"])
    grandchild = read_pid(pidfile)
    spawn.strays.append(grandchild)
    assert child.popen.wait(5) == 0
    assert is_alive(grandchild)  # the group outlived its leader
    assert grandchild.pid in child.kill_tree()
    assert wait_until(lambda: dead(grandchild), 3.0)


DOUBLE_FORK_SETSID = """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            time.sleep(1000)
        os._exit(0)
    os.wait()
"""


def test_setsid_double_fork_escapee_is_killed_after_leader_exit(spawn, tmp_path):
    pidfile = tmp_path / "escapee.pid"
    child = spawn(py(DOUBLE_FORK_SETSID) + [str(pidfile)])
    escapee = read_pid(pidfile)
    spawn.strays.append(escapee)
    assert child.popen.wait(5) == 0
    assert os.getsid(escapee.pid) != child.pid  # really left the session and group
    assert escapee.ppid() != child.pid
    assert escapee.pid in child.kill_tree()
    assert wait_until(lambda: dead(escapee), 3.0)


def test_stop_blocking_kills_escapee_of_a_running_leader(spawn, tmp_path):
    pidfile = tmp_path / "escapee.pid"
    code = DOUBLE_FORK_SETSID + "    time.sleep(1000)\n"
    child = spawn(py(code) + [str(pidfile)])
    escapee = read_pid(pidfile)
    spawn.strays.append(escapee)
    assert child.stop_blocking(signal.SIGTERM, grace=2.0) == -signal.SIGTERM
    assert wait_until(lambda: dead(escapee), 3.0)


def test_rss_tree_counts_descendants(spawn, tmp_path):
    pidfile = tmp_path / "gc.pid"
    child = spawn(["bash", "-c", f"sleep 1000 & echo $! > {pidfile}; wait"])
    grandchild = read_pid(pidfile)
    spawn.strays.append(grandchild)
    leader_rss = psutil.Process(child.pid).memory_info().rss
    assert child.rss_tree() >= leader_rss + grandchild.memory_info().rss > 0


PDEATHSIG_PARENT = """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from dropsited.daemon.supervision.child import ChildProcess
    child = ChildProcess.spawn(["sleep", "1000"], pdeathsig=sys.argv[2] == "1")
    print(child.pid, flush=True)
    time.sleep(1000)
"""


def _orphan_of_killed_parent(pdeathsig: bool, strays) -> psutil.Process:
    """Start a short-lived parent that spawns a child, SIGKILL the parent."""
    argv = py(PDEATHSIG_PARENT) + [str(REPO), "1" if pdeathsig else "0"]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        strays.append(child)
        # Behind setpriv the signal is armed just before `sleep` is exec'd; a parent
        # dying inside that ~1 ms window is the case the daemon's start-up orphan
        # sweep covers (test_process_tree), so wait for the exec here.
        wait_until(lambda: child.name() == "sleep", 3.0)
    finally:
        parent.kill()
        parent.wait(5)
        parent.stdout.close()
    return child


@linux_only
def test_pdeathsig_kills_child_when_parent_is_sigkilled(spawn):
    child = _orphan_of_killed_parent(True, spawn.strays)
    assert wait_until(lambda: dead(child), 3.0)


@linux_only
def test_without_pdeathsig_child_outlives_parent(spawn):
    child = _orphan_of_killed_parent(False, spawn.strays)
    time.sleep(0.2)
    assert is_alive(child)
