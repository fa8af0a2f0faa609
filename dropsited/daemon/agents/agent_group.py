"""What every kind of agent (exec, worker, service) offers the daemon loop."""

from __future__ import annotations

import dataclasses
import errno
import time

from ...protocol import Task
from ..context import Context
from ..manifest import AgentSpec
from ..supervision.states import AgentState
from .agent_env import agent_environ
from .agent_log import LOG_FOLDER, RotatingLog, log_path
from .interrupt import Interrupt
from .settle import Settled


class AgentGroup:
    """All processes of one manifest entry, and the tasks they hold.

    The daemon's loop calls only what is defined here, for every kind of agent, and
    never asks which kind it holds: a method that means nothing for a kind (resize for
    an exec agent, restart_instance for a service) does nothing by default.
    """

    mode = "?"

    def __init__(self, spec: AgentSpec, ctx: Context) -> None:
        self.spec = spec
        self.ctx = ctx
        self.env = agent_environ(spec.env, ctx.ds.workspace, spec.name, ctx.marker)
        self.log_file = open_agent_log(spec, ctx)
        self.running: dict[str, Task] = {}
        self.tasks_done = 0
        self.tasks_failed = 0
        self.last_error = ""
        self.started_wall = time.time()
        # `dropsited stop`: who stopped it and when; it stays stopped (across reloads and
        # scales) until `dropsited start`. `start_pending`: start once the stop is over.
        self.stopped_by: dict | None = None
        self.start_pending = False
        self.waiting_for: tuple[str, ...] = ()  # `after:` agents not RUNNING yet (roster)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tags(self) -> list[str] | None:
        return list(self.spec.tags) if self.spec.tags else None

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Start what runs without a task (long-lived processes); called once, when added."""

    def resize(self, spec: AgentSpec) -> None:
        """Take a definition that differs only in `concurrency` (a reload)."""
        self.spec = spec

    def tick(self, now: float) -> None:
        """Advance supervision; called on every loop turn."""

    def check_memory(self) -> None:
        """Restart (or kill) processes over max_memory."""

    def reap_removed(self) -> None:
        """Forget processes beyond the concurrency once they have stopped."""

    def begin_stop(self) -> None:
        """Stop taking tasks and let the running ones finish (called again on every turn
        of a drain)."""

    def stopped(self) -> bool:
        """True once nothing of this agent runs and it holds no task."""
        return not self.running

    def kill_now(self) -> None:
        """The drain's grace is over: end every process of this agent now."""

    def close(self) -> None:
        """After it stopped: release what the group holds (its log)."""
        self.log_file.close()

    # -- tasks ------------------------------------------------------------------------
    def takes_tasks(self) -> bool:
        return True

    def free_slots(self) -> int:
        """Tasks it can start now; nothing is assigned to a group without free slots."""
        return 0

    def prefetch_slots(self) -> int:
        """Tasks it would take beyond its idle processes; only exec agents claim ahead."""
        return 0

    def assign(self, task: Task) -> None:
        raise NotImplementedError(f"{self.mode} agents take no tasks")

    def finished(self, task_id: str, settled: Settled, error: str = "") -> None:
        """Bookkeeping after a task left this agent (main thread, from an event)."""
        self.running.pop(task_id, None)
        if settled is Settled.DONE:
            self.tasks_done += 1
        elif settled.failed_attempt and error:
            # a release (drain) has no error and a "later" (exit 75) is not a failure
            # of the agent
            self.count_failure(error)

    def count_failure(self, error: str) -> None:
        self.tasks_failed += 1
        self.last_error = error

    def spawn_failed(self, task_id: str, message: str) -> None:
        """The command could not start for this task, which went back unused."""
        self.finished(task_id, Settled.RELEASED)

    def restart_instance(self, index: int) -> None:
        """Restart one process (a worker that did not answer within its timeout)."""

    # -- control requests (dropsited stop/start/restart/scale/cancel) ---------------------
    def stop_on_request(self, interrupt: Interrupt, hold: bool = True) -> list[str]:
        """Stop every process (stop signal to its group, grace, SIGKILL); the tasks they
        hold go back to inbox/. `hold`: it stays stopped until `start_on_request`.
        Returns the ids of the tasks interrupted."""
        if hold:
            self.stopped_by = interrupt.by.record()
        self.start_pending = False
        return self._stop_processes(interrupt)

    def start_on_request(self) -> None:
        """Start what does not run (after a stop, EXITED or FATAL), at once or as soon as
        a stop in progress is over."""
        self.stopped_by = None
        if self.stopping():
            self.start_pending = True
        else:
            self._start_processes()

    def restart_on_request(self, interrupt: Interrupt) -> list[str]:
        """Stop, then start again (a stopped agent too, as supervisorctl does)."""
        interrupted = self.stop_on_request(interrupt, hold=False)
        self.start_on_request()
        return interrupted

    def scale(self, count: int) -> None:
        """`count` processes (exec: tasks at once) until a reload changes this agent or the
        daemon restarts; a stopped agent stays stopped."""
        self.resize(dataclasses.replace(self.spec, concurrency=count))

    def cancel(self, task_id: str, interrupt: Interrupt) -> bool:
        """Stop the process running `task_id`, which then goes where `interrupt` says;
        False when this kind of agent cannot (a service claims its tasks itself)."""
        return False

    def control_tick(self) -> None:
        """Carry out a start that waited for a stop to end (every loop turn)."""
        if self.start_pending and not self.stopping():
            self.start_pending = False
            if self.stopped_by is None:
                self._start_processes()

    def stopping(self) -> bool:
        """True while a process of this agent is being stopped."""
        return False

    def _stop_processes(self, interrupt: Interrupt) -> list[str]:
        return []

    def _start_processes(self) -> None:
        """Start what does not run; leave running processes alone."""
    def on_ready(self, index: int, pid: int) -> None:
        """Process `index` (pid `pid`) printed its ready line (a Ready event)."""

    def on_probe(self, index: int, pid: int, kind: str, ok: bool, detail: str) -> None:
        """A ready or health check of this agent ended (a ProbeDone event)."""

    # -- what it reports ------------------------------------------------------------------
    def held_pids(self) -> set[int]:
        return set()

    def instances(self, now: float) -> list[dict]:
        return []

    def busy(self) -> bool:
        """True while a process is between states: the loop then wakes every 0.1 s."""
        return any(i["state"] in BETWEEN_STATES for i in self.instances(0))

    def state(self, now: float) -> AgentState:
        states = [AgentState[i["state"]] for i in self.instances(now)]
        if not states:
            return AgentState.RUNNING
        for preferred in (AgentState.RUNNING, AgentState.STARTING, AgentState.BACKOFF,
                          AgentState.STOPPING, AgentState.FATAL, AgentState.EXITED):
            if preferred in states:
                return preferred
        return AgentState.STOPPED

    def describe(self, now: float) -> dict:
        instances = self.instances(now)
        return {
            "name": self.name, "role": self.spec.role or self.mode, "mode": self.mode,
            "state": self.state(now).name,
            "pids": [i["pid"] for i in instances if i.get("pid")],
            "instances": instances,
            "concurrency": self.spec.concurrency,
            "uptime": round(time.time() - self.started_wall, 1),
            "restarts": sum(i.get("restarts", 0) for i in instances),
            "tasks_done": self.tasks_done, "tasks_failed": self.tasks_failed,
            "running": sorted(self.running),
            "last_error": self.last_error or next(
                (i["last_error"] for i in instances if i.get("last_error")), ""),
            "tags": self.tags, "log": str(self.log_file.path),
            "stopped_by": self.stopped_by,
            **({"waiting_for": list(self.waiting_for)} if self.waiting_for else {}),
        }


# States after which something happens soon by itself (a start, a stop, a restart).
BETWEEN_STATES = frozenset({"STARTING", "STOPPING", "BACKOFF"})


def open_agent_log(spec: AgentSpec, ctx: Context) -> RotatingLog:
    """The agent's log: in the workspace's agents/logs/ (made 0755 and opened without
    following links), or the manifest's `log.file`, which its author chose."""
    path = log_path(ctx.ds.workspace, spec.name, spec.log.file, ctx.ds.store.shared)
    store = ctx.ds.store
    if spec.log.file is not None:
        return RotatingLog(path, spec.log.max_bytes, spec.log.backups)
    store.make_folder(LOG_FOLDER)
    try:
        return RotatingLog(path, spec.log.max_bytes, spec.log.backups, dir_fd=store.fd(LOG_FOLDER))
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    # Someone planted a link where the log belongs: keep it aside, never write through it.
    store.quarantine(LOG_FOLDER, path.name, "a symbolic link where an agent log belongs "
                     "(never followed)")
    return RotatingLog(path, spec.log.max_bytes, spec.log.backups, dir_fd=store.fd(LOG_FOLDER))
