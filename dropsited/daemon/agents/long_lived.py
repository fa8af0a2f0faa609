"""What worker and service agents share: a list of supervised processes to grow,
shrink, watch for memory and stop."""

from __future__ import annotations

from ..context import log
from ..supervision.states import AgentState
from ..supervision.supervised import Supervised
from .agent_group import AgentGroup
from .interrupt import Interrupt


class LongLivedGroup(AgentGroup):
    """`concurrency` Supervised processes; subclasses say how to make one and when
    one may be stopped (a worker only between tasks)."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.procs: list[Supervised] = [self._new(i) for i in range(spec.concurrency)]

    def _new(self, index: int) -> Supervised:
        raise NotImplementedError

    def _may_stop(self, proc: Supervised) -> bool:
        return True

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def tick(self, now: float) -> None:
        for proc in self.procs:
            proc.tick(now)
        self.stop_surplus()

    def check_memory(self) -> None:
        if self.spec.max_memory is None:
            return
        for proc in self.procs:
            if proc.alive and proc.rss() > self.spec.max_memory:
                log.warning("%s: over max_memory, restarting", proc.name)
                proc.over_memory()

    def resize(self, spec) -> None:
        """Scale without touching the instances that stay (supervisor #1154, circus #997)."""
        self.spec = spec
        while len(self.procs) < spec.concurrency:
            proc = self._new(len(self.procs))
            self.procs.append(proc)
            if self.stopped_by is None:  # a stopped agent stays stopped when scaled
                proc.start()
        self.stop_surplus()

    def stop_surplus(self) -> None:
        """Stop instances beyond the concurrency once they may stop: a scale-down cuts no task short."""
        for proc in self.procs[self.spec.concurrency:]:
            if self._may_stop(proc):
                proc.begin_stop()

    def reap_removed(self) -> None:
        """Forget instances beyond the concurrency once they have stopped."""
        keep = self.spec.concurrency
        self.procs = self.procs[:keep] + [p for p in self.procs[keep:] if p.alive]

    def begin_stop(self) -> None:
        for proc in self.procs:
            if self._may_stop(proc):
                proc.begin_stop()

    def stopped(self) -> bool:
        return not self.running and not any(p.alive for p in self.procs)

    def kill_now(self) -> None:
        for proc in self.procs:
            proc.kill_now()

    # -- control requests ---------------------------------------------------------------
    def _stop_processes(self, interrupt: Interrupt) -> list[str]:
        interrupted = []
        for proc in self.procs:
            task_id = self._interrupt(proc, interrupt)
            if task_id is not None:
                interrupted.append(task_id)
            proc.stop_on_request()
        return interrupted

    def _interrupt(self, proc: Supervised, interrupt: Interrupt) -> str | None:
        """Tell `proc` what its current task becomes when it stops (workers hold one)."""
        return None

    def _start_processes(self) -> None:
        for proc in self.procs[:self.spec.concurrency]:
            proc.start_on_request()

    def stopping(self) -> bool:
        return any(p.state is AgentState.STOPPING for p in self.procs)

    def on_ready(self, index: int, pid: int) -> None:
        for proc in self.procs:
            if proc.index == index:
                proc.on_ready_line(pid)

    def on_probe(self, index: int, pid: int, kind: str, ok: bool, detail: str) -> None:
        for proc in self.procs:
            if proc.index == index:
                proc.on_probe(kind, pid, ok, detail)

    def held_pids(self) -> set[int]:
        return {p.child.pid for p in self.procs if p.child is not None and p.alive}

    def instances(self, now: float) -> list[dict]:
        return [p.describe(now) for p in self.procs]
