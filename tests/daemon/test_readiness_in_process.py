"""The timing rules of readiness, health checks, start order and the soft timeout, with
the fake clock and fake children (tests/fake_processes.py): the pure verdicts of
supervision/readiness.py, then Supervised, WorkerAgent and the Roster carrying them out.
The test plays the loop: it ticks and hands the groups the events their threads post.
Real processes run the same rules in test_readiness.py."""

from __future__ import annotations

import queue
import signal
import time
from pathlib import Path

import pytest
import yaml
from fake_processes import FakeSpawner
from harness import FakeClock

from dropsited.daemon.agents.roster import Roster
from dropsited.daemon.agents.service_agent import ServiceAgent
from dropsited.daemon.agents.soft_timeout import SoftTimeout
from dropsited.daemon.agents.worker_agent import WorkerAgent
from dropsited.daemon.context import Context
from dropsited.daemon.events import Ready
from dropsited.daemon.manifest import AgentSpec, parse_manifest
from dropsited.daemon.supervision.readiness import (
    HealthRecord,
    StartVerdict,
    probe_due,
    start_verdict,
)
from dropsited.daemon.supervision.states import AgentState
from dropsited.protocol import DropSite

S = AgentState
V = StartVerdict


# -- the pure rules -------------------------------------------------------------------------
@pytest.mark.parametrize(("readiness", "ready", "ran_for", "expected"), [
    (False, False, 0.5, V.WAIT), (False, False, 1.0, V.UP),  # start_seconds 1 rules
    (True, False, 30.0, V.WAIT), (True, True, 0.01, V.UP),  # readiness replaces it
    (True, False, 60.0, V.TIMED_OUT), (True, True, 90.0, V.UP)])
def test_start_verdict(readiness: bool, ready: bool, ran_for: float, expected: V) -> None:
    assert start_verdict(readiness, ready, ran_for, 1.0, 60.0) is expected


def test_probe_due_never_overlaps_and_waits_its_interval() -> None:
    assert probe_due(False, None, since=0.0, interval=10.0, now=10.0)
    assert not probe_due(False, None, since=0.0, interval=10.0, now=9.9)
    assert not probe_due(True, 0.0, since=0.0, interval=10.0, now=100.0)  # one at a time
    assert probe_due(False, 5.0, since=0.0, interval=10.0, now=15.0)


def test_health_counts_failures_in_a_row_only() -> None:
    record = HealthRecord().record(False).record(False)
    assert record.in_a_row == 2 and record.exhausted(2) and not record.exhausted(3)
    assert record.record(True) == HealthRecord()


# -- carried out by the groups ---------------------------------------------------------------
class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock(1000.0)
        self.spawner = FakeSpawner(self.clock)
        self.ds = DropSite(tmp_path / "ws", durable=False, retry_base=0)
        self.ctx = Context(self.ds, "marker", clock=self.clock, spawn=self.spawner)
        self.probes: list[tuple[str, int]] = []  # (kind, pid) of each probe launched
        self.groups: list = []

    def specs(self, *agents: dict) -> list[AgentSpec]:
        text = yaml.safe_dump({"workspace": "ws", "agents": list(agents)})
        return list(parse_manifest(text, self.tmp_path / "agents.yaml", environ={}).agents)

    def fake_probes(self, group) -> None:
        for proc in group.procs:
            proc.launch_probe = lambda ctx, kind, probe, cwd, env, agent, index, pid: \
                self.probes.append((kind, pid))

    def group(self, kind, **keys):
        group = kind(self.specs({"name": "a", "command": ["agent"], **keys})[0], self.ctx)
        self.fake_probes(group)
        self.groups.append(group)
        group.start()
        return group

    def advance(self, seconds: float, group) -> None:
        self.clock.advance(seconds)
        group.tick(self.clock())

    def close(self) -> None:
        for child in self.spawner.children:
            child.exit(-signal.SIGKILL)
        time.sleep(0.05)
        for group in self.groups:
            group.kill_now()
            group.close()
        self.spawner.close()


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    yield r
    r.close()


def test_a_ready_check_holds_starting_until_it_passes(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=0,
                      ready_check={"command": ["probe"], "interval": 2})
    proc, child = group.procs[0], rig.spawner.next_child(1)
    rig.advance(0, group)
    assert rig.probes == [("ready", child.pid)]  # the first run at once
    group.on_probe(0, child.pid, "ready", False, "exit status 1")
    rig.advance(1.0, group)
    assert proc.state is S.STARTING and len(rig.probes) == 1  # not before its interval
    rig.advance(1.0, group)
    assert len(rig.probes) == 2
    group.on_probe(0, child.pid + 1, "ready", True, "")  # another process's: ignored
    rig.advance(0.1, group)
    assert proc.state is S.STARTING
    group.on_probe(0, child.pid, "ready", True, "")
    rig.advance(0.1, group)
    assert proc.state is S.RUNNING


def test_not_ready_by_start_timeout_is_a_failed_start_toward_fatal(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_timeout=5, stop_grace=1,
                      ready_check="probe", backoff={"initial": 1, "max": 1},
                      give_up={"failures": 2, "window": 600})
    proc = group.procs[0]
    for n in (1, 2):
        child = rig.spawner.next_child(n)
        rig.advance(4.9, group)
        assert proc.state is S.STARTING and child.alive
        rig.advance(0.2, group)  # start_timeout: the stop signal
        assert child.signals == [signal.SIGTERM]
        rig.advance(0.1, group)  # it obeyed: the exit goes through the restart policy
        assert proc.last_error == "not ready within start_timeout (5s)"
        if n == 1:
            assert proc.state is S.BACKOFF and proc.window.count(rig.clock()) == 1
            rig.advance(1.0, group)
    assert proc.state is S.FATAL


def test_a_failing_health_check_restarts_after_failures_in_a_row(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=0, stop_grace=1,
                      health_check={"command": "check", "interval": 10, "failures": 2},
                      backoff={"initial": 1, "max": 1})
    proc, child = group.procs[0], rig.spawner.next_child(1)
    rig.advance(0, group)
    assert proc.state is S.RUNNING and rig.probes == []
    outcomes = [False, True, False, False]  # a success in between resets the count
    for i, ok in enumerate(outcomes):
        rig.advance(10, group)
        assert rig.probes[-1] == ("health", child.pid) and len(rig.probes) == i + 1
        group.on_probe(0, child.pid, "health", ok, "" if ok else "exit status 1: stuck")
        if i < 3:
            assert child.alive
    assert child.signals == [signal.SIGTERM]
    rig.advance(0.1, group)
    assert proc.state is S.BACKOFF
    assert proc.last_error == "health check failed 2 times in a row: exit status 1: stuck"
    assert proc.window.count(rig.clock()) == 1  # counted toward FATAL like any failure


def test_a_ready_line_worker_takes_tasks_only_once_ready(rig: Rig) -> None:
    group = rig.group(WorkerAgent, mode="worker", ready="line", start_timeout=30)
    proc, child = group.procs[0], rig.spawner.next_child(1)
    rig.advance(5, group)  # long past start_seconds
    assert proc.state is S.STARTING and group.free_slots() == 0
    child.say(b"booting\n" + b'{"ready": true}\n')
    event = rig.ctx.events.get(timeout=5)
    assert event == Ready("a", 0, child.pid)
    group.on_ready(event.index, event.pid)
    rig.advance(0.1, group)
    assert proc.state is S.RUNNING and group.free_slots() == 1


def test_without_a_ready_signal_a_worker_keeps_the_start_seconds_rule(rig: Rig) -> None:
    group = rig.group(WorkerAgent, mode="worker", start_seconds=2)
    assert group.free_slots() == 1  # as before: it may take a task while STARTING
    rig.advance(2, group)
    assert group.procs[0].state is S.RUNNING


def test_the_roster_starts_an_agent_after_those_it_names_are_running(rig: Rig) -> None:
    db, app = rig.specs({"name": "db", "command": ["db"], "mode": "service", "ready_check": "p"},
                        {"name": "app", "command": ["app"], "mode": "service", "after": ["db"],
                         "start_seconds": 0})
    roster = Roster(rig.ctx)
    roster.add(db)
    rig.fake_probes(roster.current["db"])
    roster.add(app)
    rig.groups += roster.all()
    roster.tick(rig.clock())
    assert len(rig.spawner.children) == 1  # only db
    assert roster.current["app"].describe(0)["waiting_for"] == ["db"]
    db_child = rig.spawner.children[0]
    roster.on_probe(_probe_done("db", db_child.pid))
    roster.tick(rig.clock())  # db RUNNING
    roster.tick(rig.clock())  # app starts
    assert len(rig.spawner.children) == 2
    assert "waiting_for" not in roster.current["app"].describe(0)
    rig.ctx.draining = True  # a drain: app stops first, db once app is gone
    roster.begin_stop()
    app_child = rig.spawner.children[1]
    assert app_child.signals == [signal.SIGTERM] and db_child.signals == []
    roster.tick(rig.clock())
    roster.begin_stop()
    assert db_child.signals == [signal.SIGTERM]


def _probe_done(agent: str, pid: int):
    from dropsited.daemon.events import ProbeDone
    return ProbeDone(agent, 0, pid, "ready", True, "")


def test_the_soft_timeout_fires_once_timeout_grace_before_the_timeout(rig: Rig) -> None:
    [spec] = rig.specs({"name": "a", "command": ["x"], "timeout": 30, "timeout_signal": "USR1",
                        "timeout_grace": "5s"})
    child = rig.spawner(["x"], stdin=None)
    soft = SoftTimeout(spec, rig.clock(), "a")
    assert soft.bound(1.0, rig.clock()) == 1.0
    rig.clock.advance(24.5)
    assert soft.bound(1.0, rig.clock()) == pytest.approx(0.5)
    assert not soft.maybe_send(child, rig.clock())
    rig.clock.advance(0.5)
    assert soft.maybe_send(child, rig.clock()) and child.signals == [signal.SIGUSR1]
    assert not soft.maybe_send(child, rig.clock())  # once per task
    [default] = rig.specs({"name": "a", "command": ["x"], "timeout": 8, "timeout_signal": "USR1"})
    assert default.soft_timeout() == 4.0  # half the timeout, at most 10 s, by default


def test_no_event_is_left_unapplied(rig: Rig) -> None:
    """The rig applied by hand what the loop dispatches by type: nothing else was posted."""
    group = rig.group(ServiceAgent, mode="service", start_seconds=0)
    rig.advance(1, group)
    with pytest.raises(queue.Empty):
        rig.ctx.events.get(timeout=0.1)


def test_an_exec_agent_with_a_ready_check_takes_tasks_once_it_passes(rig: Rig) -> None:
    from dropsited.daemon.agents.exec_agent import ExecAgent
    from dropsited.daemon.agents.exec_ready import GATE_INDEX

    [spec] = rig.specs({"name": "a", "command": ["x"], "start_timeout": 3,
                        "ready_check": {"command": "p", "interval": 1},
                        "backoff": {"initial": 2, "max": 2}, "give_up": 2})
    group = ExecAgent(spec, rig.ctx)
    group.launch_probe = lambda ctx, kind, probe, cwd, env, agent, index, pid: \
        rig.probes.append((kind, index))
    rig.groups.append(group)
    group.start()
    rig.advance(0, group)
    assert group.agent_state is S.STARTING and group.free_slots() == 0
    assert rig.probes == [("ready", GATE_INDEX)]
    group.on_probe(GATE_INDEX, 0, "ready", False, "exit status 1: no model server")
    rig.advance(3, group)  # start_timeout: a failed start of the agent
    assert group.agent_state is S.BACKOFF and group.spawn_failures == 1
    assert group.last_error == ("not ready within start_timeout (3s): exit status 1: "
                                "no model server")
    rig.advance(2, group)  # the pause is over: a new round of checks
    assert group.agent_state is S.STARTING
    rig.advance(0, group)
    assert len(rig.probes) == 2
    group.on_probe(GATE_INDEX, 0, "ready", True, "")
    rig.advance(0.1, group)
    assert group.agent_state is S.RUNNING and group.free_slots() == 1
    assert group.spawn_failures == 0
