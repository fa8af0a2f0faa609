"""Supervision in-process: Supervised, the long-lived groups and ExecAgent with an injected
spawner (tests/fake_processes.py) and the fake clock, so every rule of the state machine
and the restart policy is exercised in milliseconds, and the clock only moves when the
test says. The same rules run against real processes in test_daemon_supervision.py,
test_daemon_contract.py and test_daemon_crash.py.

The test plays the daemon's loop: it ticks the group and applies the events the group's
threads post, through the same AgentGroup methods the loop calls.
"""

from __future__ import annotations

import json
import queue
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fake_processes import FakeChild, FakeSpawner
from harness import FakeClock, wait_until

from dropsited.daemon.agents.agent_group import AgentGroup
from dropsited.daemon.agents.exec_agent import ExecAgent
from dropsited.daemon.agents.service_agent import ServiceAgent
from dropsited.daemon.agents.settle import Settled
from dropsited.daemon.agents.worker_agent import WorkerAgent
from dropsited.daemon.context import Context
from dropsited.daemon.events import Finished, ReapNow, RestartInstance, SpawnFailed
from dropsited.daemon.manifest import AgentSpec, parse_manifest
from dropsited.daemon.supervision.states import AgentState
from dropsited.protocol import DropSite, Task, TaskBuilder

S = AgentState


class Rig:
    """One group on a real workspace, a fake clock and a fake spawner; `loop()` applies
    the events its threads posted, as the daemon's loop does."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock(1000.0)
        self.spawner = FakeSpawner(self.clock)
        self.ds = DropSite(tmp_path / "ws", durable=False, retry_base=0)
        self.ctx = Context(self.ds, "marker", clock=self.clock, spawn=self.spawner)
        self.groups: list[AgentGroup] = []
        self.seen: list[object] = []

    def spec(self, **keys: object) -> AgentSpec:
        agent = {"name": "a", "command": ["agent", "--flag"], **keys}
        text = yaml.safe_dump({"workspace": "ws", "agents": [agent]})
        return parse_manifest(text, self.tmp_path / "agents.yaml", environ={}).agents[0]

    def group(self, kind: type[AgentGroup], **keys: object) -> AgentGroup:
        group = kind(self.spec(**keys), self.ctx)
        self.groups.append(group)
        group.start()
        return group

    def advance(self, seconds: float, group: AgentGroup) -> None:
        self.clock.advance(seconds)
        group.tick(self.clock())

    def loop(self, group: AgentGroup, until: Callable[[], object] | None = None,
             timeout: float = 5.0) -> list[object]:
        """Apply posted events to `group` until `until()` holds (or, without it, until no
        event came for 0.3 s); returns the events applied."""
        applied = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until():
                return applied
            try:
                event = self.ctx.events.get(timeout=0.05 if until else 0.3)
            except queue.Empty:
                if until is None:
                    return applied
                continue
            applied.append(event)
            self.seen.append(event)
            if isinstance(event, Finished):
                group.finished(event.task_id, event.settled, event.error)
            elif isinstance(event, SpawnFailed):
                group.spawn_failed(event.task_id, event.message)
            elif isinstance(event, RestartInstance):
                group.restart_instance(event.index)
            group.tick(self.clock())
        if until is not None:
            raise AssertionError(f"not reached within {timeout}s; events: {applied}")
        return applied

    def claim(self, title: str = "t", **context: object) -> Task:
        self.ds.submit(TaskBuilder(title, "test").context(context).max_retries(3).build())
        task = self.ds.claim_next("a")
        assert task is not None
        return task

    def close(self) -> None:
        for child in self.spawner.children:
            child.exit(-signal.SIGKILL)
        time.sleep(0.05)  # the groups' reader threads see end of file
        for group in self.groups:
            group.kill_now()
            group.close()
        self.spawner.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def proc_of(group: AgentGroup, index: int = 0):
    return group.procs[index]


# -- one supervised process (service mode) --------------------------------------------------
def test_a_process_is_running_once_up_for_start_seconds(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=2)
    child = rig.spawner.next_child(1)
    assert proc_of(group).state is S.STARTING and child.argv == ["agent", "--flag"]
    rig.advance(1.0, group)
    assert proc_of(group).state is S.STARTING
    rig.advance(1.5, group)
    assert proc_of(group).state is S.RUNNING
    record = group.describe(rig.clock())
    assert record["state"] == "RUNNING" and record["pids"] == [child.pid]
    assert child.env["DROPSITE_AGENT"] == "a" and child.env["DROPSITED_DAEMON"] == "marker"


def test_a_failed_start_backs_off_then_starts_again(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=5,
                      backoff={"initial": 2, "max": 60, "factor": 2})
    proc = proc_of(group)
    rig.spawner.next_child(1).exit(1, stderr=b"first\nmissing config\n")
    wait_until(lambda: list(proc.stderr_tail) == ["first", "missing config"], 2)  # pumped
    rig.advance(0.5, group)
    assert proc.state is S.BACKOFF
    assert proc.last_error == "exit status 1: missing config"
    assert 1.0 <= proc.next_start - rig.clock() < 2.0  # equal jitter on 2 s
    rig.advance(0.5, group)
    assert proc.state is S.BACKOFF and len(rig.spawner.children) == 1
    rig.advance(2.0, group)
    assert proc.state is S.STARTING and proc.restarts == 1
    assert len(rig.spawner.children) == 2


def test_failures_in_the_window_give_up_with_fatal(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=5,
                      give_up={"failures": 3, "window": 60}, backoff={"initial": 1, "max": 1})
    proc = proc_of(group)
    for n in range(1, 4):
        rig.spawner.next_child(n).exit(2)
        rig.advance(0.1, group)
        rig.advance(1.0, group)
    assert proc.state is S.FATAL
    assert len(rig.spawner.children) == 3
    rig.advance(600, group)
    assert proc.state is S.FATAL and len(rig.spawner.children) == 3


def test_exit_78_is_fatal_at_once(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=0)
    rig.advance(1, group)
    rig.spawner.next_child(1).exit(78)
    rig.advance(0.1, group)
    assert proc_of(group).state is S.FATAL


def test_restart_never_leaves_an_ended_process_exited(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", restart="never", start_seconds=1)
    rig.advance(2, group)
    rig.spawner.next_child(1).exit(0)
    rig.advance(0.1, group)
    assert proc_of(group).state is S.EXITED
    assert group.stopped()


def test_a_stop_waits_out_the_grace_then_kills(rig: Rig) -> None:
    rig.spawner.obeys = False  # ignores SIGTERM
    group = rig.group(ServiceAgent, mode="service", start_seconds=0, stop_grace=10,
                      stop_signal="INT")
    rig.advance(1, group)
    child = rig.spawner.next_child(1)
    group.begin_stop()
    assert proc_of(group).state is S.STOPPING and child.signals == [signal.SIGINT]
    rig.advance(9, group)
    assert proc_of(group).state is S.STOPPING and child.alive
    rig.advance(2, group)
    assert proc_of(group).state is S.STOPPED
    assert child.signals == [signal.SIGINT, signal.SIGKILL]
    assert rig.loop(group) == [ReapNow()]  # a service's claims go back at once


def test_over_max_memory_restarts_and_counts_as_a_failure(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=0, max_memory="1M")
    rig.advance(1, group)
    child = rig.spawner.next_child(1)
    child.rss = 2 * 1024 * 1024
    group.check_memory()
    assert child.signals == [signal.SIGTERM]
    rig.advance(0.1, group)
    proc = proc_of(group)
    assert proc.state is S.BACKOFF
    assert proc.window.count(rig.clock()) == 1
    assert proc.last_error.startswith("over max_memory")


def test_a_command_that_cannot_start_backs_off(rig: Rig) -> None:
    rig.spawner.refuse = FileNotFoundError(2, "No such file or directory", "agent")
    group = rig.group(ServiceAgent, mode="service")
    proc = proc_of(group)
    assert proc.state is S.BACKOFF
    assert proc.last_error == "cannot start 'agent': No such file or directory"
    rig.ctx.draining = True  # a drain now: no restart, and the stop ends it
    rig.advance(120, group)
    assert proc.state is S.BACKOFF and not rig.spawner.children
    group.begin_stop()
    assert proc.state is S.STOPPED


def test_resize_keeps_the_instances_that_stay(rig: Rig) -> None:
    group = rig.group(ServiceAgent, mode="service", start_seconds=0)
    first = rig.spawner.next_child(1)
    group.resize(rig.spec(mode="service", start_seconds=0, concurrency=3))
    assert len(rig.spawner.children) == 3 and first.alive
    group.resize(rig.spec(mode="service", start_seconds=0, concurrency=1))
    rig.advance(0.1, group)
    group.reap_removed()
    assert [p.index for p in group.procs] == [0] and first.alive
    assert not rig.spawner.children[1].alive and not rig.spawner.children[2].alive


# -- worker mode ------------------------------------------------------------------------------
def started_worker(rig: Rig, **keys: object) -> tuple[WorkerAgent, FakeChild]:
    group = rig.group(WorkerAgent, mode="worker", start_seconds=0, **keys)
    rig.advance(0.1, group)
    return group, rig.spawner.next_child(1)


def test_a_worker_gets_the_task_line_and_its_reply_ends_the_task(rig: Rig) -> None:
    group, child = started_worker(rig)
    assert group.free_slots() == 1
    task = rig.claim("shout", text="hi")
    group.assign(task)
    line = json.loads(child.read_line())
    assert (line["id"], line["context"]) == (task.id, {"text": "hi"})
    assert group.free_slots() == 0
    child.say(b"not a reply\n" + json.dumps({"id": task.id, "status": "done", "result": {"x": 1}}).encode() + b"\n")
    rig.loop(group, until=lambda: group.tasks_done == 1)
    assert rig.ds.get_task(task.id).result == {"x": 1}
    assert group.free_slots() == 1 and not group.running


def test_a_worker_past_its_timeout_is_restarted_at_once_and_not_counted(rig: Rig) -> None:
    group, child = started_worker(rig, timeout=5)
    task = rig.claim()
    group.assign(task)
    child.read_line()
    rig.clock.advance(6)  # the I/O thread sees the deadline within its 0.25 s poll
    rig.loop(group, until=lambda: len(rig.spawner.children) == 2)
    assert RestartInstance("a", 0) in rig.seen
    proc = proc_of(group)
    assert child.signals == [signal.SIGTERM] and proc.state is S.STARTING
    assert proc.window.count(rig.clock()) == 0 and proc.restarts == 0
    rig.loop(group, until=lambda: group.tasks_failed == 1)
    entry = rig.ds.get_task(task.id).history[-1]
    assert (entry["reason"], entry["error"]) == ("timeout", "timeout: killed after 5s")


def test_a_worker_that_dies_mid_task_fails_the_attempt_and_restarts(rig: Rig) -> None:
    group, child = started_worker(rig, backoff={"initial": 1, "max": 1})
    task = rig.claim()
    group.assign(task)
    child.read_line()
    child.say(stderr=b"segfault, probably\n")
    wait_until(lambda: list(proc_of(group).stderr_tail) == ["segfault, probably"], 2)  # pumped
    child.exit(-signal.SIGKILL)
    rig.loop(group, until=lambda: group.tasks_failed == 1)
    entry = rig.ds.get_task(task.id).history[-1]
    assert entry["error"] == "worker died mid-task (killed by SIGKILL)"
    assert entry["signal"] == "SIGKILL" and entry["stderr"] == "segfault, probably"
    rig.advance(0.1, group)
    assert proc_of(group).state is S.BACKOFF
    rig.advance(1.0, group)
    assert proc_of(group).state is S.STARTING and proc_of(group).restarts == 1


# -- exec mode --------------------------------------------------------------------------------
def test_an_exec_agent_runs_one_process_per_task(rig: Rig) -> None:
    group = rig.group(ExecAgent, concurrency=2)
    assert group.state(rig.clock()) is S.RUNNING and group.free_slots() == 2
    task = rig.claim("count", text="a b c")
    group.assign(task)
    child = rig.spawner.next_child(1)
    assert json.loads(child.read_all())["id"] == task.id
    assert child.env["DROPSITE_TASK_ID"] == task.id
    assert child.env["DROPSITE_TASK_FILE"] == str(rig.ds.held_path(task))
    assert [i["state"] for i in group.instances(rig.clock())] == ["RUNNING"]
    child.exit(0, stdout=b'{"words": 3}\n', stderr=b"counting\n")
    rig.loop(group, until=lambda: group.tasks_done == 1)
    assert rig.ds.get_task(task.id).result == {"words": 3}
    wait_until(lambda: b"counting" in group.log_file.path.read_bytes(), 2)


def test_an_exec_task_past_its_timeout_is_stopped_and_fails(rig: Rig) -> None:
    group = rig.group(ExecAgent, timeout=2, stop_signal="TERM")
    task = rig.claim()
    group.assign(task)
    child = rig.spawner.next_child(1)
    rig.clock.advance(3)
    rig.loop(group, until=lambda: group.tasks_failed == 1)
    assert child.signals[0] == signal.SIGTERM
    entry = rig.ds.get_task(task.id).history[-1]
    assert (entry["reason"], entry["error"]) == ("timeout", "timeout: killed after 2s")


def test_exec_start_failures_pause_by_the_backoff_then_go_fatal(rig: Rig) -> None:
    rig.spawner.refuse = PermissionError(13, "Permission denied", "agent")
    group = rig.group(ExecAgent, backoff={"initial": 10, "max": 60, "factor": 2},
                      give_up={"failures": 2})
    first = rig.claim("one")
    group.assign(first)
    rig.loop(group, until=lambda: group.state(rig.clock()) is S.BACKOFF)
    assert 5.0 <= group.paused_until - rig.clock() < 10.0
    assert group.free_slots() == 0 and group.last_error == "cannot start 'agent': Permission denied"
    assert rig.ds.get_task(first.id).retry_count == 0  # the agent's fault, not the task's
    rig.advance(10, group)
    assert group.state(rig.clock()) is S.STARTING and group.free_slots() == 1
    group.assign(rig.ds.claim_next("a"))
    rig.loop(group, until=lambda: group.state(rig.clock()) is S.FATAL)
    assert group.free_slots() == 0 and group.tasks_failed == 2


def test_an_exec_agent_is_running_again_once_a_start_works(rig: Rig) -> None:
    rig.spawner.refuse = FileNotFoundError(2, "No such file or directory", "agent")
    group = rig.group(ExecAgent, backoff=1)
    group.assign(rig.claim())
    rig.loop(group, until=lambda: group.state(rig.clock()) is S.BACKOFF)
    rig.spawner.refuse = None  # the missing program was installed meanwhile
    rig.advance(1, group)
    assert group.state(rig.clock()) is S.STARTING
    group.assign(rig.ds.claim_next("a"))
    rig.spawner.next_child(1).exit(0)
    rig.loop(group, until=lambda: group.tasks_done == 1)
    assert group.state(rig.clock()) is S.RUNNING and group.spawn_failures == 0


def test_a_draining_exec_agent_stops_once_its_tasks_are_done(rig: Rig) -> None:
    group = rig.group(ExecAgent)
    group.assign(rig.claim())
    child = rig.spawner.next_child(1)
    group.begin_stop()
    assert group.state(rig.clock()) is S.STOPPING and not group.stopped()
    child.exit(0)
    rig.loop(group, until=lambda: group.state(rig.clock()) is S.STOPPED)
    assert group.stopped() and group.tasks_done == 1
    assert [e.settled for e in rig.seen if isinstance(e, Finished)] == [Settled.DONE]
