"""Stateful property test: random interleavings of every task operation and of crashes.

A model says which folder each task must be in. After every step the workspace must
agree: each task id in exactly one folder (the model's), no stray temp files, and the
file's history consistent with the moves made (its status is its last history entry,
the last entry matches the folder, the retry count matches the failed attempts).

Crashes are real processes: a forked child claims a task and exits (a dead holder,
requeued by `reap`), and forked children die half-way through a move, before or after
the commit point (`recover_temp_files` must remove or promote their temp files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from dropsited import ClaimLost, DropSite, TaskBuilder
from dropsited.protocol.store import TASK_FOLDERS, temp_name, tombstone_name, write_file

LAST_STATUS = {"inbox": ("inbox", "retry"), "active": ("active",), "done": ("done",),
               "failed": ("failed",), "blocked": ("blocked",), "feedback": ("feedback",)}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 0.01  # every claim gets its own holder name
        return self.now


def in_child(action) -> None:
    """Run `action` in a forked child that then dies without cleaning up."""
    pid = os.fork()
    if pid == 0:
        try:
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


class TaskLifecycle(RuleBasedStateMachine):
    held = Bundle("held")
    SHARED = False  # a shared file system's store commits moves by a rename (store.py)

    @initialize()
    def setup(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dropsited-sm-")
        self.clock = Clock()
        self.ds = DropSite(Path(self.dir) / "ws", durable=False, clock=self.clock,
                           rand=lambda: 0.0, shared=self.SHARED)
        self.folder: dict[str, str] = {}
        self.retries: dict[str, int] = {}
        self.max_retries: dict[str, int] = {}
        self.dead_held: set[str] = set()
        self.live_held: set[str] = set()

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def ids_in(self, folder: str) -> list[str]:
        return sorted(t for t, f in self.folder.items() if f == folder)

    def free(self, folder: str) -> list[str]:
        return [t for t in self.ids_in(folder) if t not in self.live_held | self.dead_held]

    def due(self, folder: str) -> list[str]:
        """Free tasks whose not-before time has passed: claim() hands out only those."""
        now = self.clock.now
        return [t for t in self.free(folder)
                if (nb := self.ds.get_task(t).not_before) is None or nb <= now]

    # -- operations at rest ----------------------------------------------------------
    @rule(max_retries=st.integers(0, 2), priority=st.integers(1, 9))
    def submit(self, max_retries: int, priority: int) -> None:
        task = TaskBuilder("t", "sm").priority(priority).max_retries(max_retries).build()
        self.ds.submit(task)
        self.folder[task.id], self.retries[task.id] = "inbox", 0
        self.max_retries[task.id] = max_retries

    @precondition(lambda self: self.due("inbox"))
    @rule(target=held, data=st.data())
    def claim(self, data):
        task_id = data.draw(st.sampled_from(self.due("inbox")))
        task = self.ds.claim("agent", task_id)
        assert task is not None and task.id == task_id
        self.folder[task_id] = "active"
        self.live_held.add(task_id)
        return task

    @rule(target=held)
    def claim_next(self):
        task = self.ds.claim_next("agent")
        if task is None:
            # Tasks whose not-before time lies ahead are not handed out.
            return None
        assert self.folder[task.id] == "inbox" and task.id not in self.live_held | self.dead_held
        self.folder[task.id] = "active"
        self.live_held.add(task.id)
        return task

    @precondition(lambda self: self.ids_in("feedback"))
    @rule(data=st.data())
    def respond(self, data) -> None:
        task_id = data.draw(st.sampled_from(self.ids_in("feedback")))
        self.ds.respond_feedback(task_id, "yes")
        self.folder[task_id] = "inbox"

    @precondition(lambda self: self.ids_in("blocked"))
    @rule(data=st.data())
    def unblock(self, data) -> None:
        task_id = data.draw(st.sampled_from(self.ids_in("blocked")))
        self.ds.unblock(task_id)
        self.folder[task_id] = "inbox"

    @precondition(lambda self: self.ids_in("failed"))
    @rule(data=st.data())
    def retry(self, data) -> None:
        task_id = data.draw(st.sampled_from(self.ids_in("failed")))
        self.ds.retry(task_id)
        self.folder[task_id], self.retries[task_id] = "inbox", 0

    # -- finishing held tasks (a held task may have been taken away meanwhile) -----
    def finish(self, task, dest: str, action) -> None:
        if task is None:
            return
        if task.id not in self.live_held or self.ds.store.locate(task.id).holder != task.holder:
            with pytest.raises(ClaimLost):
                action()
            return
        action()
        self.live_held.discard(task.id)
        self.folder[task.id] = dest

    @rule(task=consumes(held))
    def complete(self, task) -> None:
        self.finish(task, "done", lambda: self.ds.complete(task, {"ok": True}))

    @rule(task=consumes(held))
    def fail(self, task) -> None:
        if task is None:
            return
        valid = task.id in self.live_held and self.ds.store.locate(task.id).holder == task.holder
        dest = "inbox"
        if valid:
            self.retries[task.id] += 1
            dest = "failed" if self.retries[task.id] > self.max_retries[task.id] else "inbox"
        self.finish(task, dest, lambda: self.ds.fail(task, "boom"))

    @rule(task=consumes(held))
    def tempfail(self, task) -> None:
        self.finish(task, "inbox", lambda: self.ds.fail(task, "later", tempfail=True))

    @rule(task=consumes(held))
    def feedback(self, task) -> None:
        self.finish(task, "feedback", lambda: self.ds.request_feedback(task, "why?"))

    @rule(task=consumes(held))
    def block(self, task) -> None:
        self.finish(task, "blocked", lambda: self.ds.block(task, "waiting"))

    @rule(task=consumes(held))
    def release(self, task) -> None:
        self.finish(task, "inbox", lambda: self.ds.release(task))

    # -- reaping and crashes ------------------------------------------------------------
    def requeued(self, task_id: str) -> str:
        self.retries[task_id] += 1
        return "failed" if self.retries[task_id] > self.max_retries[task_id] else "inbox"

    @rule()
    def reap(self) -> None:
        """Only dead holders' tasks are reaped; live ones are never touched."""
        reaped = {task_id for task_id, _ in self.ds.reap(stale=3600)}
        assert reaped == self.dead_held
        for task_id in self.dead_held:
            self.folder[task_id] = self.requeued(task_id)
        self.dead_held.clear()

    @rule()
    def steal(self) -> None:
        """A human's override: every held task, live or dead, goes back (or fails)."""
        self.clock.now += 7200
        reaped = {task_id for task_id, _ in self.ds.reap(stale=3600, include_live=True)}
        assert reaped == self.live_held | self.dead_held
        for task_id in reaped:
            self.folder[task_id] = self.requeued(task_id)
        self.live_held.clear()
        self.dead_held.clear()

    @precondition(lambda self: self.due("inbox"))
    @rule(data=st.data())
    def crash_after_claim(self, data) -> None:
        task_id = data.draw(st.sampled_from(self.due("inbox")))
        clock = lambda: self.clock.now  # noqa: E731 - the child shares the fake time
        in_child(lambda: DropSite(self.ds.workspace, durable=False, clock=clock)
                 .claim("ghost", task_id))
        assert self.ds.store.locate(task_id).folder == "active"
        self.folder[task_id] = "active"
        self.dead_held.add(task_id)

    @precondition(lambda self: [t for f in ("inbox", "done", "failed") for t in self.free(f)])
    @rule(data=st.data(), dest=st.sampled_from(TASK_FOLDERS))
    def crash_before_commit(self, data, dest: str) -> None:
        """The writer died after writing its temp file, before unlinking the source."""
        task_id = data.draw(st.sampled_from(
            [t for f in ("inbox", "done", "failed") for t in self.free(f)]))
        task = self.ds.store.load(self.ds.store.locate(task_id).path)

        def die() -> None:
            write_file(self.ds.workspace / dest / temp_name(task_id), task.to_json(), False)
        in_child(die)
        self.ds.store.recover_temp_files()  # removed: the task is still where it was

    @precondition(lambda self: self.free("inbox"))
    @rule(data=st.data())
    def crash_after_commit(self, data) -> None:
        """The writer died after the unlink (the commit), before renaming its temp file."""
        task_id = data.draw(st.sampled_from(self.free("inbox")))
        src = self.ds.store.locate(task_id).path
        task = self.ds.store.load(src)
        task.log("blocked", reason="crash test")

        def die() -> None:
            write_file(self.ds.workspace / "blocked" / temp_name(task_id), task.to_json(), False)
            if self.SHARED:  # the commit is the source renamed to this writer's tombstone
                os.rename(src, src.parent / tombstone_name(task_id))
            else:
                os.unlink(src)
        in_child(die)
        self.ds.store.recover_temp_files()  # promoted: the move is finished
        self.folder[task_id] = "blocked"

    @precondition(lambda self: self.SHARED and self.free("inbox"))
    @rule(data=st.data(), placed=st.booleans())
    def crash_after_commit_without_temp(self, data, placed: bool) -> None:
        """Shared store: the writer died with its tombstone left, after placing the task
        (`placed`) or having lost its temp file: finished, or the source put back."""
        task_id = data.draw(st.sampled_from(self.free("inbox")))
        src = self.ds.store.locate(task_id).path
        task = self.ds.store.load(src)
        task.log("blocked", reason="crash test")

        def die() -> None:
            os.rename(src, src.parent / tombstone_name(task_id))
            if placed:
                write_file(self.ds.workspace / "blocked" / f"{task_id}.json", task.to_json(), False)
        in_child(die)
        self.ds.store.recover_temp_files()
        if placed:
            self.folder[task_id] = "blocked"

    # -- the properties -------------------------------------------------------------------
    @invariant()
    def one_task_one_folder(self) -> None:
        if not hasattr(self, "ds"):
            return
        seen: dict[str, list[str]] = {}
        for folder in TASK_FOLDERS:
            for name in os.listdir(self.ds.workspace / folder):
                assert not name.startswith("."), f"stray temp file {folder}/{name}"
                seen.setdefault(name[:-5].split("~")[0], []).append(folder)
        assert seen == {t: [f] for t, f in self.folder.items()}

    @invariant()
    def history_matches_the_moves(self) -> None:
        if not hasattr(self, "ds"):
            return
        for task_id, folder in self.folder.items():
            task = self.ds.store.load(self.ds.store.locate(task_id).path)
            last = task.history[-1]["status"]
            assert last in LAST_STATUS[folder], (task_id, folder, task.history)
            assert task.history[0]["status"] in ("pending", "inbox")
            assert task.retry_count == self.retries[task_id], (task_id, task.history)
            if folder != "active":
                assert task.status == last
            holder = self.ds.store.locate(task_id).holder
            assert (holder is not None) == (folder == "active" and task.history[-1].get("claimed_by") is not None)


TaskLifecycle.TestCase.settings = settings(
    max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "60")), stateful_step_count=40,
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_task_lifecycle = TaskLifecycle.TestCase


class SharedTaskLifecycle(TaskLifecycle):
    SHARED = True


SharedTaskLifecycle.TestCase.settings = settings(
    max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "30")), stateful_step_count=40,
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_shared_task_lifecycle = SharedTaskLifecycle.TestCase
