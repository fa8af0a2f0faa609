"""service mode: long-lived agents that poll the workspace themselves (an AgentLoop script).

The daemon only supervises them; their claims name their own pid, so when
one dies the daemon's reaper returns its task to the inbox at once.
"""

from __future__ import annotations

import threading

from ..events import ReapNow
from ..supervision.spawner import Child
from ..supervision.supervised import Supervised
from .agent_log import pump
from .long_lived import LongLivedGroup


class ServiceAgent(LongLivedGroup):
    mode = "service"

    def _new(self, index: int) -> Supervised:
        proc = Supervised(self.spec, self.ctx, self.env, self.log_file, index, stdin_pipe=False)
        proc.on_spawn = self._pump_stdout
        proc.on_exit = lambda child: self.ctx.post(ReapNow())
        return proc

    def _pump_stdout(self, child: Child) -> None:
        threading.Thread(target=pump, args=(child.stdout, self.log_file), daemon=True,
                         name=f"{self.name}-stdout").start()

    def takes_tasks(self) -> bool:
        return False
