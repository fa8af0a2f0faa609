"""exec mode: one process per task, the task on stdin or as a file path in argv."""

from __future__ import annotations

import contextlib
import queue
import random
import signal
import subprocess
import threading

from ...protocol import Task
from ..context import log
from ..events import Finished, SpawnFailed
from ..supervision.probes import launch_probe
from ..supervision.readiness import StartVerdict
from ..supervision.spawner import Child
from ..supervision.states import AgentState, check_transition
from .agent_env import task_environ
from .agent_group import AgentGroup
from .exec_ready import GATE_INDEX, ExecReadyGate
from .exec_run import POLL_SLICE, Exited, Watch, communicate, outcome_of
from .interrupt import Interrupt
from .settle import Settled, release, settle

# Claim ahead only for agents whose last task ran shorter than this (seconds): the
# round trip it saves is 1-3 ms, worth having for tasks of a few ms and nothing for
# longer ones, which then keep at most `concurrency` tasks in active/.
PREFETCH_BELOW = 0.05
S = AgentState


class ExecAgent(AgentGroup):
    """Runs up to `concurrency` processes at once, each for one task.

    The agent as a whole moves through AgentState like a long-lived one: RUNNING while
    its command starts, BACKOFF (a pause by its `backoff`) after a start that failed,
    STARTING while the next task tries again, FATAL after `give_up.failures` failed
    starts in a row, STOPPING then STOPPED on a drain. Its processes are RUNNING.
    """

    mode = "exec"

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.agent_state = S.STOPPED  # changed on the main thread only (change_state)
        self.children: dict[str, Child] = {}
        self.kill_requested = False
        self.spawn_failures = 0  # failed starts since the last start that worked
        self.paused_until = 0.0
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.slot_threads = 0
        self.recent_runtime: float | None = None  # seconds the last process ran (slot threads)
        # Processes alive now, against spec.concurrency: slot threads outlive a reload
        # that lowers concurrency, and tasks claimed ahead must not start extra ones.
        self._permits = threading.Condition()
        self._live = 0
        # task id -> Interrupt: a control request stops that task's process (set by the
        # main thread, acted on and removed by the slot thread that runs the task).
        self.interrupts: dict[str, Interrupt] = {}
        self.gate: ExecReadyGate | None = None  # a round of `ready_check:` (exec_ready.py)
        self.launch_probe = launch_probe  # a test hands in its own

    def change_state(self, new: AgentState, why: str = "") -> None:
        check_transition(self.agent_state, new)
        log.info("%s: %s -> %s%s", self.name, self.agent_state.name, new.name,
                 f" ({why})" if why else "")
        self.agent_state = new

    def start(self) -> None:
        self.change_state(S.STARTING)
        if self.spec.ready_check is not None:
            self.gate = ExecReadyGate(self, self.ctx.clock())
        else:
            self.change_state(S.RUNNING, "a process starts for each task")

    def tick(self, now: float) -> None:
        if self.gate is not None and self.agent_state is S.STARTING:
            self._gate_tick(now)
        elif self.agent_state is S.BACKOFF and now >= self.paused_until:
            self.change_state(S.STARTING, "pause over: the next task tries again")
            if self.spec.ready_check is not None:
                self.gate = ExecReadyGate(self, now)
        elif self.agent_state is S.STARTING and self.spawn_failures == 0:
            self.change_state(S.RUNNING, "the command started")
        elif self.agent_state is S.STOPPING and not self.running:
            self.change_state(S.STOPPED)

    def _gate_tick(self, now: float) -> None:
        verdict = self.gate.tick(now)
        if verdict is StartVerdict.UP:
            self.gate, self.spawn_failures = None, 0
            self.change_state(S.RUNNING, "ready check passed")
        elif verdict is StartVerdict.TIMED_OUT:
            detail = f": {self.gate.detail}" if self.gate.detail else ""
            self.gate = None
            self._failed_start(f"not ready within start_timeout "
                               f"({self.spec.start_timeout:g}s){detail}")

    def on_probe(self, index: int, pid: int, kind: str, ok: bool, detail: str) -> None:
        if self.gate is not None and index == GATE_INDEX and kind == "ready":
            self.gate.result(ok, detail)

    def free_slots(self) -> int:
        if self._stalled() or self.agent_state is S.STOPPING:
            return 0
        return self.spec.concurrency - len(self.running)

    def prefetch_slots(self) -> int:
        """One task may wait, already claimed, behind each process while tasks are short.

        A slot whose process exits then starts the next one at once and records
        the finished task while it runs: the claim, the loop's round trip and
        the result's write leave the path between two processes. After a long
        task (or before any) nothing is claimed ahead. The rule looks at the last
        task only: with tasks of mixed lengths, a task claimed ahead may wait
        behind a long one, while the agent's other processes keep taking from
        the same queue.
        """
        quick = self.recent_runtime is not None and self.recent_runtime < PREFETCH_BELOW
        if not quick or self.ctx.draining or self._stalled() or self.agent_state is S.STOPPING:
            return 0
        return 2 * self.spec.concurrency - len(self.running)

    def _stalled(self) -> bool:
        """No process may start now (read by slot threads too); a stopping agent still
        runs what it holds."""
        return (self.kill_requested or self.gate is not None
                or self.agent_state in (S.BACKOFF, S.FATAL, S.STOPPED))

    def assign(self, task: Task) -> None:
        """Hand `task` to a slot thread, which spawns the agent and waits for it.

        Spawning in slot threads keeps the fork off the main loop. They live as long
        as the group, so the parent-death signal a child gets while the death watch
        is down (it binds to the spawning thread) fires only when the daemon goes.
        """
        self.running[task.id] = task
        if len(self.running) > self.slot_threads and self.slot_threads < self.spec.concurrency:
            self.slot_threads += 1
            threading.Thread(target=self._slot, daemon=True,
                             name=f"{self.name}-slot{self.slot_threads}").start()
        self.queue.put(task)

    def _slot(self) -> None:
        """Run queued tasks one process at a time; record each after its successor started."""
        exited: Exited | None = None
        while True:
            if exited is None:
                task = self.queue.get()
            else:
                try:
                    task = self.queue.get_nowait()
                except queue.Empty:
                    self._record(exited)
                    exited = None
                    continue
            if task is None:  # close()
                if exited is not None:
                    self._record(exited)
                return
            if exited is not None and not self._take_permit(wait=False):
                self._record(exited)  # no process may start yet: record while waiting
                exited = None
            if exited is None:
                self._take_permit(wait=True)
            child = self._start(task)
            if exited is not None:
                self._record(exited)
                exited = None
            if child is not None:
                exited = self._wait(task, child)
                self.ctx.untrack(child.pid)

    def _take_permit(self, wait: bool) -> bool:
        """Count one more live process if `concurrency` allows (waiting for it if `wait`)."""
        with self._permits:
            while self._live >= self.spec.concurrency and not self.kill_requested:
                if not wait:
                    return False
                self._permits.wait(POLL_SLICE)
            self._live += 1
            return True

    def _give_permit(self) -> None:
        with self._permits:
            self._live -= 1
            self._permits.notify()

    def _start(self, task: Task) -> Child | None:
        """Spawn the agent for `task` under a permit taken by the caller; None (permit
        given back) when no process started."""
        child = None
        stopping = self.kill_requested or self.ctx.draining
        interrupt = self.interrupts.pop(task.id, None)
        if interrupt is not None:  # stopped or cancelled before its process started
            self.ctx.post(Finished(self.name, task.id, interrupt.settle(self.ctx, task, self.name)))
        elif stopping or self._stalled():
            # claimed ahead of its turn, and the daemon is stopping or the agent
            # cannot start: back, unused
            reason = "daemon stopping" if stopping else "agent paused after failed starts"
            self.ctx.post(Finished(self.name, task.id, release(self.ctx.ds, task, reason, self.name)))
        else:
            child = self._spawn(task)
        if child is None:
            self._give_permit()
        return child

    def _spawn(self, task: Task) -> Child | None:
        task_file = self.ctx.ds.held_path(task)
        use_stdin = self.spec.input == "stdin"
        try:
            with self.ctx.spawn_lock:
                child = self.ctx.spawn(
                    self.spec.argv(str(task_file)),
                    cwd=self.spec.cwd, env=task_environ(self.env, task.id, task_file),
                    stdin=subprocess.PIPE if use_stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pdeathsig=not self.ctx.watch_up(), clock=self.ctx.clock)
                self.children[task.id] = child
                self.ctx.track(child.pid)
        except Exception as exc:  # OSError mostly; anything else must not kill the slot
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            message = f"cannot start {self.spec.argv()[0]!r}: {detail}"
            if not isinstance(exc, OSError):
                log.exception("%s: %s", self.name, message)
            release(self.ctx.ds, task, message, self.name)
            self.ctx.post(SpawnFailed(self.name, task.id, message))
            return None
        self.spawn_failures = 0
        return child

    def spawn_failed(self, task_id: str, message: str) -> None:
        """A command that cannot start is the agent's fault, not the task's: no attempt used."""
        self.finished(task_id, Settled.RELEASED)
        self._failed_start(message)

    def _failed_start(self, message: str) -> None:
        """The command could not start, or the agent was not ready in time: BACKOFF, or
        FATAL after give_up.failures in a row."""
        self.count_failure(message)
        log.error("%s: %s", self.name, message)
        self.spawn_failures += 1
        if self.agent_state in (S.RUNNING, S.STARTING):  # else already paused, or stopping
            if self.spawn_failures >= max(1, self.spec.give_up.failures):
                self.change_state(S.FATAL, f"{self.spawn_failures} failed starts")
                log.error("%s: FATAL after %d failed starts", self.name, self.spawn_failures)
                self.ctx.agent_event("fatal", self.name, instance=None,
                                     reason=f"{self.spawn_failures} failed starts",
                                     last_error=message, restarts=0, delay=0)
            else:
                self.change_state(S.BACKOFF, "its command did not start")
        if self.agent_state is S.BACKOFF:  # failures that raced in lengthen the pause
            delay = self.spec.backoff.delay(self.spawn_failures, random.random())
            self.paused_until = self.ctx.clock() + delay

    # -- slot thread ---------------------------------------------------------------
    def _wait(self, task: Task, child: Child) -> Exited:
        """Wait for the process, its output going to the log as it comes. If the runner
        itself fails, the process is killed and the attempt fails with that reason: every
        per-task step ends in an outcome, and the permit always comes back."""
        try:
            data = task.to_json(indent=None) if self.spec.input == "stdin" else None
            out, err, timed_out, killed, total = communicate(
                child, data, self.log_file, self.ctx.ds.store.max_task_bytes, Watch(
                    self.spec, self.name, self.ctx.clock, lambda: self.kill_requested,
                    lambda: task.id in self.interrupts))
            self._kill_leftovers(child)
            self.recent_runtime = child.ran_for()
            return Exited(task, child.returncode, out, err, timed_out, killed, total,
                           interrupt=self.interrupts.pop(task.id, None))
        except Exception as exc:  # never let a slot thread die silently
            log.exception("%s: runner for %s failed", self.name, task.id)
            with contextlib.suppress(Exception):  # never a second run beside this one
                child.kill_tree(timeout=2.0)
            return Exited(task, -1, b"", b"", False, False,
                           runner_error=f"the daemon could not run this task: {exc}")
        finally:
            self._give_permit()

    def _record(self, exited: Exited) -> None:
        """Move the task to where its outcome sends it, then tell the loop."""
        task = exited.task
        try:
            if exited.killed:
                settled, error = release(self.ctx.ds, task, "daemon stopping", self.name), ""
            elif exited.interrupt is not None:
                settled, error = exited.interrupt.settle(self.ctx, task, self.name), ""
            else:
                outcome = outcome_of(exited, self.ctx.ds.store.max_task_bytes, self.spec.timeout)
                settled, error = settle(self.ctx, task, outcome, self.name), outcome.error
        except Exception as exc:  # never let a slot thread die silently
            log.exception("%s: recording %s failed", self.name, task.id)
            settled, error = Settled.ERROR, str(exc)
        self.ctx.post(Finished(self.name, task.id, settled, error))

    @staticmethod
    def _kill_leftovers(child: Child) -> None:
        child.send_signal_group(signal.SIGKILL)  # whatever it left in its group

    # -- main thread --------------------------------------------------------------
    def finished(self, task_id: str, settled: Settled, error: str = "") -> None:
        self.children.pop(task_id, None)
        self.interrupts.pop(task_id, None)  # one that came after the task had ended
        super().finished(task_id, settled, error)

    def check_memory(self) -> None:
        if self.spec.max_memory is None:
            return
        for task_id, child in tuple(self.children.items()):
            if child.poll() is None and child.rss_tree() > self.spec.max_memory:
                log.warning("%s: task %s over max_memory; killed", self.name, task_id)
                child.kill_tree(timeout=2.0)

    def begin_stop(self) -> None:
        """Running tasks may finish (kill_now ends them when the grace runs out);
        tasks claimed ahead of a busy process go back to the inbox now, unused."""
        self._enter_stop(resting=(S.BACKOFF,))
        self._release_queued()

    def _enter_stop(self, resting: tuple[AgentState, ...]) -> None:
        """STOPPING while processes run; STOPPED at once from the `resting` states."""
        if self.agent_state in (S.RUNNING, S.STARTING):
            self.change_state(S.STOPPING)
        elif self.agent_state in resting:
            self.change_state(S.STOPPED, f"stop requested while {self.agent_state.name}")

    def _release_queued(self) -> None:
        while True:
            try:
                task = self.queue.get_nowait()
            except queue.Empty:
                return
            if task is None:  # close() came first: leave its sentinel for the slots
                self.queue.put(None)
                return
            self.finished(task.id, release(self.ctx.ds, task, "daemon stopping", self.name))

    # -- control requests -------------------------------------------------------------
    def _stop_processes(self, interrupt: Interrupt) -> list[str]:
        """Every running task's process is stopped and its task given back; the agent is
        STOPPED once they are all recorded (tick)."""
        self._enter_stop(resting=(S.BACKOFF, S.FATAL))
        interrupted = sorted(self.running)
        for task_id in interrupted:
            self.interrupts[task_id] = interrupt
        return interrupted

    def _start_processes(self) -> None:
        if self.agent_state in (S.STOPPED, S.FATAL, S.BACKOFF):
            self.spawn_failures = 0
            self.change_state(S.STARTING, "start requested")

    def stopping(self) -> bool:
        return self.agent_state is S.STOPPING

    def cancel(self, task_id: str, interrupt: Interrupt) -> bool:
        if task_id not in self.running:
            return False
        self.interrupts[task_id] = interrupt
        return True

    def kill_now(self) -> None:
        self.kill_requested = True
        for child in self._children_now():
            if child.poll() is None:
                child.send_signal_group(signal.SIGKILL)

    def describe(self, now: float) -> dict:
        """As every agent, with tasks claimed ahead listed apart from those a process runs."""
        record = super().describe(now)
        started = set(self.children)
        record["running"] = sorted(t for t in self.running if t in started)
        record["claimed_ahead"] = sorted(t for t in self.running if t not in started)
        return record

    def held_pids(self) -> set[int]:
        return {c.pid for c in self._children_now()}

    def _children_now(self) -> tuple[Child, ...]:
        """The children at this instant, for the main thread: slot threads add to
        `children` at any time, and iterating a dict that grows raises RuntimeError
        (tuple() copies it in one step under the GIL)."""
        return tuple(self.children.values())

    def close(self) -> None:
        for _ in range(self.slot_threads):
            self.queue.put(None)
        super().close()

    def instances(self, now: float) -> list[dict]:
        return [{"index": i, "state": S.RUNNING.name, "pid": c.pid, "task": tid,
                 "uptime": round(c.ran_for(), 1), "restarts": 0, "last_error": ""}
                for i, (tid, c) in enumerate(tuple(self.children.items()))]

    def state(self, now: float) -> AgentState:
        return self.agent_state
