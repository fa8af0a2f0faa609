"""worker mode: long-lived processes exchanging one JSON line per task on stdin/stdout.

The daemon writes the task as one line of JSON; the worker answers with one
line: a reply object (docs/PROTOCOL.md, "Worker mode"). Lines that are not
JSON objects are copied to the agent's log and otherwise ignored. With
`prefetch: N` a process holds up to N tasks at once and replies are matched by
`id` (worker_pipeline.py); outcomes are written by the agent's Recorder, off the
threads that talk to the process (recorder.py).
"""

from __future__ import annotations

from ...protocol import Task
from ..supervision.spawner import Child
from ..supervision.states import AgentState
from ..supervision.supervised import Supervised
from .interrupt import Interrupt
from .long_lived import LongLivedGroup
from .recorder import Recorder
from .worker_lines import OVERSIZE, LineReader, write_all
from .worker_pipeline import WRITE_DEADLINE, Pipeline

__all__ = ["OVERSIZE", "WRITE_DEADLINE", "LineReader", "WorkerAgent", "WorkerInstance",
           "write_all"]


class WorkerInstance(Supervised):
    """One worker process plus the threads that talk to it (its Pipeline)."""

    def __init__(self, group: WorkerAgent, index: int) -> None:
        super().__init__(group.spec, group.ctx, group.env, group.log_file, index, stdin_pipe=True)
        self.group = group
        self.pipeline: Pipeline | None = None
        self.on_spawn = self._spawned
        self.on_exit = self._gone

    def held(self) -> int:
        """Tasks this process holds now: handed to it and not yet answered."""
        return 0 if self.pipeline is None else self.pipeline.flight.load()

    def room(self) -> int:
        """Tasks it may take now: up to `prefetch` at once, while it is up and wanted."""
        # With a ready signal a worker takes tasks once RUNNING; without, from its start.
        up = (AgentState.RUNNING,) if self.spec.readiness else (AgentState.STARTING,
                                                                 AgentState.RUNNING)
        if (self.state not in up or self.pipeline is None
                or self.stop_requested or self.memory_hit):
            return 0
        return max(0, self.spec.prefetch - self.held())

    def idle(self) -> bool:
        return self.room() > 0

    def give(self, task: Task) -> None:
        self.pipeline.give(task)

    def task_ids(self) -> list[str]:
        return [] if self.pipeline is None else self.pipeline.flight.ids()

    def _spawned(self, child: Child) -> None:
        self.pipeline = Pipeline(self, child)

    def _gone(self, child: Child) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None


class WorkerAgent(LongLivedGroup):
    mode = "worker"

    def __init__(self, spec, ctx) -> None:
        self.kill_requested = False
        self.wake_posted = False  # a Replied is on its way to the loop (worker_pipeline.py)
        self.recorder = Recorder(ctx, spec.name)
        super().__init__(spec, ctx)

    def _new(self, index: int) -> WorkerInstance:
        return WorkerInstance(self, index)

    def _may_stop(self, proc: Supervised) -> bool:
        return proc.held() == 0

    def wanted(self) -> list[WorkerInstance]:
        """The instances that take tasks; those beyond the concurrency are on their way out."""
        return self.procs[:self.spec.concurrency]

    def free_slots(self) -> int:
        self.wake_posted = False  # first: a reply from now on posts a new Replied
        return sum(w.room() for w in self.wanted())

    def assign(self, task: Task) -> None:
        """To the wanted instance holding the fewest tasks: work spreads over the processes."""
        worker = min((w for w in self.wanted() if w.room() > 0), key=lambda w: w.held())
        self.running[task.id] = task
        worker.give(task)

    def _stop_processes(self, interrupt: Interrupt) -> list[str]:
        """Every task a stopped process holds is recorded by `interrupt` once it is gone."""
        interrupted = []
        for proc in self.procs:
            if proc.pipeline is not None:
                interrupted += proc.pipeline.interrupt_all(interrupt)
            proc.stop_on_request()
        return interrupted

    def cancel(self, task_id: str, interrupt: Interrupt) -> bool:
        """Stop the instance holding `task_id` and start it again (its state is unknown
        after a task cut short): the task is recorded by `interrupt` once the process is
        gone, and every other task that instance held goes back to inbox/ unused."""
        for worker in self.procs:
            if worker.pipeline is not None and worker.pipeline.cancel(task_id, interrupt):
                worker.begin_stop(restart=True)
                return True
        return False

    def restart_instance(self, index: int) -> None:
        for worker in self.procs:
            if worker.index == index:
                worker.begin_stop(restart=True)

    def kill_now(self) -> None:
        self.kill_requested = True
        super().kill_now()

    def close(self) -> None:
        self.recorder.close()
        super().close()

    def instances(self, now: float) -> list[dict]:
        out = []
        for worker in self.procs:
            info = worker.describe(now)
            ids = worker.task_ids()
            info["task"] = ids[0] if ids else None
            info["tasks"] = ids
            out.append(info)
        return out
