"""Finding processes by group or env tag, and orphans left by a SIGKILLed daemon."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from harness import wait_until

from dropsited.daemon.containment.process_tree import (
    CHILD_TAG_ENV,
    MARKER_ENV,
    DaemonMarker,
    find_orphans_from_previous_run,
    is_alive,
    signal_group,
    stop_orphans_from_previous_run,
    tree_members,
)


@pytest.fixture
def procs():
    """Popen objects and psutil handles killed (with their groups) after the test."""
    popens: list[subprocess.Popen] = []
    handles: list[psutil.Process] = []
    yield popens, handles
    for proc in handles:
        if is_alive(proc):
            proc.kill()
    for p in popens:
        signal_group(p.pid, signal.SIGKILL)
        p.kill()
        p.wait(5)
        if p.stdout:
            p.stdout.close()


# A stand-in for a daemon: spawns one agent in its own session with the marker in its
# env, prints the agent's pid, then idles until it is killed.
FAKE_DAEMON = """
    import os, subprocess, sys, time
    import psutil
    me = psutil.Process()
    marker = f"{sys.argv[1]}:{me.pid}:{me.create_time():.2f}"
    agent = [sys.executable, "-c", sys.argv[2]]
    env = dict(os.environ, DROPSITED_DAEMON=marker)
    p = subprocess.Popen(agent, env=env, start_new_session=True)
    print(p.pid, flush=True)
    time.sleep(1000)
"""
SLEEPER = "import time; time.sleep(1000)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"


def start_fake_daemon(workspace, agent_code, procs) -> tuple[subprocess.Popen, psutil.Process]:
    argv = [sys.executable, "-c", textwrap.dedent(FAKE_DAEMON), str(workspace), agent_code]
    daemon = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    procs[0].append(daemon)
    agent = psutil.Process(int(daemon.stdout.readline()))
    procs[1].append(agent)
    assert wait_until(lambda: MARKER_ENV in agent.environ())  # exec done
    return daemon, agent


def test_marker_round_trip_with_colons_in_path():
    marker = DaemonMarker("/srv/a:b/ws", 1234, 1700000000.25)
    assert DaemonMarker.parse(marker.format()) == marker


@pytest.mark.parametrize("value", ["", "nonsense", "/ws:notapid:1.0", "/ws:1:x"])
def test_marker_parse_rejects_garbage(value):
    assert DaemonMarker.parse(value) is None


def test_marker_of_current_process_is_alive(tmp_path):
    marker = DaemonMarker.for_current_process(tmp_path)
    assert marker.workspace == str(tmp_path.resolve())
    assert marker.daemon_alive()
    assert not DaemonMarker(marker.workspace, marker.pid, marker.start - 100).daemon_alive()


def test_marker_of_dead_pid_is_dead():
    p = subprocess.Popen(["true"])
    p.wait()
    assert not DaemonMarker("/ws", p.pid, time.time()).daemon_alive()


def test_tree_members_finds_group_and_tag(procs):
    tag = "test-tag-123"
    env = dict(os.environ, **{CHILD_TAG_ENV: tag})
    grouped = subprocess.Popen(["sleep", "30"], start_new_session=True)
    tagged = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    procs[0].extend([grouped, tagged])
    assert [p.pid for p in tree_members(pgid=grouped.pid)] == [grouped.pid]
    assert wait_until(lambda: [p.pid for p in tree_members(tag=tag)] == [tagged.pid])
    assert tree_members(pgid=None, tag=None) == []


def test_signal_group_refuses_our_own_group():
    assert signal_group(os.getpgrp(), 0) is False
    assert signal_group(1, 0) is False


def test_orphans_of_a_killed_daemon_are_found_and_stopped(tmp_path, procs):
    daemon, agent = start_fake_daemon(tmp_path, SLEEPER, procs)
    assert find_orphans_from_previous_run(tmp_path) == []  # its daemon still lives
    daemon.kill()
    daemon.wait(5)
    assert [p.pid for p in find_orphans_from_previous_run(tmp_path)] == [agent.pid]
    start = time.monotonic()
    assert stop_orphans_from_previous_run(tmp_path, grace=2.0) == [agent.pid]
    assert time.monotonic() - start < 1.5  # a zombie counts as gone: no full grace
    assert wait_until(lambda: not is_alive(agent), 3.0)


def test_stubborn_orphan_is_killed_after_grace(tmp_path, procs):
    daemon, agent = start_fake_daemon(tmp_path, STUBBORN, procs)
    daemon.kill()
    daemon.wait(5)
    time.sleep(0.2)  # let the agent install its SIGTERM handler
    start = time.monotonic()
    assert stop_orphans_from_previous_run(tmp_path, grace=0.3) == [agent.pid]
    assert time.monotonic() - start >= 0.3
    assert wait_until(lambda: not is_alive(agent), 3.0)


def test_orphans_of_other_workspaces_and_live_daemons_are_left_alone(tmp_path, procs):
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    dead_daemon, orphan = start_fake_daemon(mine, SLEEPER, procs)
    _, kept_live = start_fake_daemon(mine, SLEEPER, procs)
    other_daemon, kept_other = start_fake_daemon(other, SLEEPER, procs)
    dead_daemon.kill()
    other_daemon.kill()
    dead_daemon.wait(5)
    other_daemon.wait(5)
    assert stop_orphans_from_previous_run(mine, grace=2.0) == [orphan.pid]
    assert wait_until(lambda: not is_alive(orphan), 3.0)
    assert is_alive(kept_live) and is_alive(kept_other)
