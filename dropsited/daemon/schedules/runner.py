"""The daemon's part of schedules: on each loop turn, drop what is due, remember it.

The loop calls `tick()` every turn and wakes up at `wakeup()` at the latest, so a slot
is acted on within one loop turn of its time. What to do is slots.decide's; this
module only looks at the workspace (is the previous run finished?), drops the task
under the slot's deterministic id and writes the state file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ...protocol import DropSite, TaskBuilder
from ...protocol.errors import DropSiteError
from ...protocol.task import Task, utcnow_iso
from ..manifest.spec import ScheduleSpec
from . import state
from .slots import Decision, When, decide, next_slot

log = logging.getLogger("dropsited")
FINISHED = ("done", "failed")


def when_of(spec: ScheduleSpec) -> When:
    return When(spec.cron, spec.every, spec.tz, spec.catch_up, spec.skip_if_running)


def build_task(spec: ScheduleSpec, slot: float) -> Task:
    """The task of one slot, under the slot's id; its first history entry names the
    schedule and the slot, so `show` says where it came from."""
    t = spec.task
    builder = (TaskBuilder(t.title, t.created_by).describe(t.description or "")
               .priority(t.priority).context(dict(t.context)).max_retries(t.max_retries)
               .with_id(state.slot_task_id(spec.name, slot)))
    if t.tags:
        builder.tag(*t.tags)
    if t.assign:
        builder.assign(t.assign)
    task = builder.build()
    task.history[-1].update(schedule=spec.name, slot=utcnow_iso(slot))
    return task


class Scheduler:
    """Every schedule of the manifest, with its remembered state."""

    def __init__(self, ds: DropSite, specs: tuple[ScheduleSpec, ...],
                 clock: Callable[[], float] = time.time) -> None:
        self.ds = ds
        self.clock = clock  # wall-clock time: slots are calendar times
        self.specs: dict[str, ScheduleSpec] = {}
        self.entries, problem = state.load(ds.store)
        if problem:
            log.error("schedules: %s; treated as no last run (no schedule catches up now; "
                      "none drops twice)", problem)
        self.next_due: dict[str, float] = {}
        self.update(specs)

    def update(self, specs: tuple[ScheduleSpec, ...]) -> None:
        """A (re)loaded manifest: new schedules start now, changed ones keep their last run."""
        now = self.clock()
        self.specs = {s.name: s for s in specs}
        for spec in specs:
            entry = self.entries.setdefault(spec.name, state.Entry())
            if entry.last is None:
                entry.last, entry.action = now, "seen"
            entry.describe = spec.describe()
            self.next_due[spec.name] = 0.0  # decide at the next tick
        for gone in set(self.next_due) - set(self.specs):
            del self.next_due[gone]
        self.tick()

    def wakeup(self) -> float:
        """Seconds until the next slot of any schedule (the loop waits at most this)."""
        if not self.next_due:
            return float("inf")
        return max(0.0, min(self.next_due.values()) - self.clock())

    def tick(self) -> None:
        """Act on every schedule whose next slot has come; write the state if anything changed."""
        now = self.clock()
        changed = False
        for name, spec in self.specs.items():
            if now < self.next_due.get(name, 0.0):
                continue
            entry = self.entries[name]
            decision = decide(when_of(spec), entry.last, now, self._running(entry))
            changed |= self._act(spec, entry, decision)
            self.next_due[name] = decision.next_slot
            if entry.next_slot != decision.next_slot:
                entry.next_slot, changed = decision.next_slot, True
        if changed:
            self._save()

    def _running(self, entry: state.Entry) -> bool:
        """Whether the last task dropped is still somewhere other than done/ or failed/."""
        if entry.task_id is None:
            return False
        found = self.ds.store.locate(entry.task_id)
        return found is not None and found.folder not in FINISHED

    def _act(self, spec: ScheduleSpec, entry: state.Entry, decision: Decision) -> bool:
        if decision.slot is None:
            return False
        slot_at = state.iso(decision.slot)
        if decision.missed:
            log.warning("schedule %s: %s%d slot(s) missed while the daemon was down", spec.name,
                        "" if decision.missed < 1000 else "at least ", decision.missed)
        if decision.action == "skip":
            log.info("schedule %s: slot %s skipped: the previous run %s is not finished",
                     spec.name, slot_at, entry.task_id)
            entry.last, entry.action = decision.slot, "skipped"
            return True
        if decision.action == "drop":
            task_id = self._drop(spec, decision.slot)
            if task_id is None:
                return False  # tried again at the next slot check
            entry.task_id, entry.task_slot = task_id, decision.slot
            entry.action = "dropped"
        else:
            entry.action = "missed"
            log.info("schedule %s: slot %s missed (catch_up: none)", spec.name, slot_at)
        entry.last = decision.slot
        return True

    def _drop(self, spec: ScheduleSpec, slot: float) -> str | None:
        """Drop the slot's task; its id is the slot's, so a second try finds the first."""
        task = build_task(spec, slot)
        if self.ds.store.locate(task.id) is not None:
            log.info("schedule %s: slot %s was already dropped as %s", spec.name,
                     state.iso(slot), task.id)
            return task.id
        try:
            self.ds.submit(task)
        except DropSiteError as exc:
            if self.ds.store.locate(task.id) is not None:  # another host was first
                return task.id
            log.error("schedule %s: cannot drop the task of slot %s: %s", spec.name,
                      state.iso(slot), exc)
            return None
        log.info("schedule %s: dropped %s for slot %s", spec.name, task.id, state.iso(slot))
        return task.id

    def _save(self) -> None:
        try:
            state.save(self.ds.store, self.entries)
        except (OSError, DropSiteError) as exc:
            log.error("schedules: cannot write the state file: %s (the slots' task ids "
                      "still keep a restart from dropping twice)", exc)

    def describe(self) -> list[dict]:
        """One row per schedule, for `dropsited schedules` and the status record."""
        rows = []
        for name, spec in self.specs.items():
            entry = self.entries[name]
            nxt = entry.next_slot or next_slot(when_of(spec), self.clock())
            rows.append({"name": name, "describe": spec.describe(), **entry.to_json(),
                         "next_slot": nxt, "next_at": state.iso(nxt)})
        return rows
