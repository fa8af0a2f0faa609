"""The daemon's agent groups: one per manifest entry, plus those retiring after a reload.

The loop asks the roster, never a kind of group: which group holds a task, which pids
are held, what a reload changes. A retiring group (removed or redefined) finishes what
it holds, then is closed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from ..context import Context, log
from ..events import Finished, ProbeDone, Ready, RestartInstance, SpawnFailed
from ..manifest import AgentSpec
from ..reload import Change
from ..supervision.states import AgentState
from .agent_group import AgentGroup
from .exec_agent import ExecAgent
from .service_agent import ServiceAgent
from .worker_agent import WorkerAgent

GROUPS: dict[str, type[AgentGroup]] = {
    "exec": ExecAgent, "worker": WorkerAgent, "service": ServiceAgent}


class Roster:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.current: dict[str, AgentGroup] = {}  # the manifest's, in its order
        self.retiring: list[AgentGroup] = []
        # The manifest's definitions, which a reload compares: a `dropsited scale` changes
        # a group's own spec only, so it holds until the manifest changes that agent.
        self.manifest_specs: dict[str, AgentSpec] = {}
        self.pending: dict[str, AgentGroup] = {}  # waiting for their `after:` agents

    def all(self) -> list[AgentGroup]:
        return list(self.current.values()) + self.retiring

    def owner(self, agent: str, task_id: str) -> AgentGroup | None:
        """The group that holds `task_id` (a retiring one included)."""
        return next((g for g in self.all() if g.name == agent and task_id in g.running), None)

    def held_pids(self) -> set[int]:
        return {pid for group in self.all() for pid in group.held_pids()}

    def running_tasks(self) -> set[str]:
        return {task_id for group in self.all() for task_id in group.running}

    def runs(self, task_id: str) -> bool:
        """A group of ours holds `task_id` (its process may still be running)."""
        return any(task_id in group.running for group in self.all())

    # -- every group at once (the loop's turns, the drain) -------------------------------
    def tick(self, now: float) -> None:
        self.start_ready()
        for group in self.all():
            group.tick(now)
        for group in self.current.values():  # a retiring group never starts again
            group.control_tick()

    def start_ready(self) -> None:
        """Start each pending group once every agent its `after:` names is RUNNING (an
        agent a reload removed no longer holds it back); none starts during a drain."""
        if self.ctx.draining:
            self.pending.clear()
            return
        for name, group in list(self.pending.items()):
            if group.stopped_by is not None:  # stopped on request while it waited
                del self.pending[name]
                continue
            waiting = [dep for dep in group.spec.after if dep in self.current
                       and self.current[dep].state(0) is not AgentState.RUNNING]
            group.waiting_for = tuple(waiting)
            if not waiting and self.current.get(name) is group:
                del self.pending[name]
                log.info("%s: starting (after %s)", name, ", ".join(group.spec.after))
                group.start()
            elif self.current.get(name) is not group:
                del self.pending[name]  # retired by a reload before it started

    def _needed_by_running(self, name: str) -> bool:
        """An agent that names `name` in `after:` still runs: `name` stops after it."""
        return any(name in other.spec.after and not other.stopped()
                   for other in self.current.values() if other.name != name)

    def check_memory(self) -> None:
        for group in self.all():
            group.check_memory()

    def busy(self) -> bool:
        return any(group.busy() for group in self.all())

    def begin_stop(self) -> None:
        """Called on every turn of a drain: an agent stops once those started after it
        (`after:`) have stopped, the reverse of the start order."""
        self.pending.clear()
        for group in self.all():
            if not self._needed_by_running(group.name):
                group.begin_stop()

    def kill_now(self) -> None:
        for group in self.all():
            group.kill_now()

    def stopped(self) -> bool:
        return all(group.stopped() for group in self.all())

    def tidy(self) -> None:
        """Close retired groups that stopped; forget instances beyond a new concurrency."""
        self.close_retired()
        for group in self.current.values():
            group.reap_removed()

    def close(self) -> None:
        for group in self.all():
            group.close()

    # -- events from the groups' threads, applied by the loop ----------------------------
    def on_finished(self, event: Finished) -> None:
        if (group := self.owner(event.agent, event.task_id)) is not None:
            group.finished(event.task_id, event.settled, event.error)

    def on_spawn_failed(self, event: SpawnFailed) -> None:
        if (group := self.owner(event.agent, event.task_id)) is not None:
            group.spawn_failed(event.task_id, event.message)

    def on_restart_instance(self, event: RestartInstance) -> None:
        if (group := self.current.get(event.agent)) is not None:
            group.restart_instance(event.index)

    def on_ready(self, event: Ready) -> None:
        if (group := self.current.get(event.agent)) is not None:
            group.on_ready(event.index, event.pid)

    def on_probe(self, event: ProbeDone) -> None:
        if (group := self.current.get(event.agent)) is not None:
            group.on_probe(event.index, event.pid, event.kind, event.ok, event.detail)

    def specs(self) -> dict[str, AgentSpec]:
        return dict(self.manifest_specs)

    def select(self, name: str) -> list[AgentGroup]:
        """The group called `name`, or every current one for "all" (control requests);
        KeyError for a name the manifest does not have."""
        if name == "all":
            return list(self.current.values())
        return [self.current[name]]

    def add(self, spec: AgentSpec, stopped_by: dict | None = None) -> None:
        """Start a group, unless it was stopped on request (it stays so until started)."""
        self.manifest_specs[spec.name] = spec
        self.current[spec.name] = group = GROUPS[spec.mode](spec, self.ctx)
        group.stopped_by = stopped_by
        if stopped_by is not None:
            return  # stopped on request: it stays so until `dropsited start`
        if spec.after:
            self.pending[spec.name] = group
            self.start_ready()
        else:
            group.start()

    def retire(self, name: str) -> None:
        self.manifest_specs.pop(name, None)
        group = self.current.pop(name)
        group.begin_stop()
        self.retiring.append(group)

    def close_retired(self) -> None:
        """Close the retiring groups that have stopped; keep stopping the others."""
        still = []
        for group in self.retiring:
            if group.stopped():
                group.close()
            else:
                group.begin_stop()
                still.append(group)
        self.retiring = still

    def change(self, change: Change, name: str, spec: AgentSpec | None) -> None:
        """Carry out one change of a reload's plan (reload.plan)."""
        if change is Change.RESIZE:
            log.info("reload: %s concurrency %d -> %d", name, self.current[name].spec.concurrency,
                     spec.concurrency)
            self.manifest_specs[name] = spec
            self.current[name].resize(spec)
            return
        why = " (definition changed)" if change is Change.RESTART else ""
        log.info("reload: %s agent %s%s", change.value, name, why)
        stopped_by = self.current[name].stopped_by if name in self.current else None
        if change in (Change.REMOVE, Change.RESTART):
            self.retire(name)
        if change in (Change.ADD, Change.RESTART):
            self.add(spec, stopped_by)

    def wait_for_runners(self, events: queue.Queue, limit: float,
                         on_finished: Callable[[Finished], None]) -> None:
        """At shutdown: let slot and I/O threads record their tasks' ends (for at most
        `limit` s); only those events matter now, the others are dropped."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(g.running for g in self.all()):
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                continue
            if type(event) is Finished:
                on_finished(event)
