"""service mode: long-lived agents that poll the workspace themselves (an AgentLoop script).

The daemon only supervises them; their claims name their own pid, so when
one dies the daemon's reaper returns its task to the inbox at once.
"""

from __future__ import annotations

import threading

from .agent_group import AgentGroup
from .agent_log import pump
from .child import ChildProcess
from .context import log
from .states import AgentState
from .supervised import Supervised


class ServiceAgent(AgentGroup):
    mode = "service"

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.procs = [self._new(i) for i in range(spec.concurrency)]

    def _new(self, index: int) -> Supervised:
        proc = Supervised(self.spec, self.ctx, self.env, self.log_file, index, stdin_pipe=False)
        proc.on_spawn = self._pump_stdout
        proc.on_exit = lambda child: self.ctx.post("reap")
        return proc

    def _pump_stdout(self, child: ChildProcess) -> None:
        threading.Thread(target=pump, args=(child.popen.stdout, self.log_file), daemon=True,
                         name=f"{self.name}-stdout").start()

    def takes_tasks(self) -> bool:
        return False

    def free_slots(self) -> int:
        return 0

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def tick(self, now: float) -> None:
        for proc in self.procs:
            proc.tick(now)

    def check_memory(self) -> None:
        if self.spec.max_memory is None:
            return
        for proc in self.procs:
            if proc.alive and proc.rss() > self.spec.max_memory:
                log.warning("%s: over max_memory, restarting", proc.name)
                proc.over_memory()

    def resize(self, concurrency: int) -> None:
        while len(self.procs) < concurrency:
            proc = self._new(len(self.procs))
            self.procs.append(proc)
            proc.start()
        for proc in self.procs[concurrency:]:
            proc.begin_stop()

    def reap_removed(self) -> None:
        keep = self.spec.concurrency
        self.procs = self.procs[:keep] + [p for p in self.procs[keep:] if p.alive]

    def begin_stop(self) -> None:
        for proc in self.procs:
            proc.begin_stop()

    def stopped(self) -> bool:
        return not any(p.alive for p in self.procs)

    def kill_now(self) -> None:
        for proc in self.procs:
            proc.kill_now()

    def held_pids(self) -> set[int]:
        return {p.child.pid for p in self.procs if p.child is not None and p.alive}

    def instances(self, now: float) -> list[dict]:
        return [p.describe(now) for p in self.procs]

    def state(self, now: float) -> AgentState:
        return super().state(now)
