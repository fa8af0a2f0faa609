"""What every kind of agent (exec, worker, service) offers the daemon loop."""

from __future__ import annotations

import errno
import time
from pathlib import Path

from ..protocol import Task
from ..protocol.holder import this_host
from .agent_env import agent_environ
from .agent_log import RotatingLog
from .context import Context
from .manifest import AgentSpec
from .states import AgentState


class AgentGroup:
    """All processes of one manifest entry, and the tasks they hold.

    Subclasses implement `free_slots`, `assign`, `tick`, `begin_stop`,
    `stopped`, `kill_now` and `instances`.
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

    @staticmethod
    def log_path(spec: AgentSpec, ctx: Context) -> Path:
        if spec.log.file is not None:
            return spec.log.file
        return ctx.log_dir / log_name(spec.name, ctx.ds.store.shared)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tags(self) -> list[str] | None:
        return list(self.spec.tags) if self.spec.tags else None

    def takes_tasks(self) -> bool:
        return True

    def free_slots(self) -> int:
        raise NotImplementedError

    def prefetch_slots(self) -> int:
        """Tasks it would take beyond its idle processes; only exec agents claim ahead."""
        return 0

    def assign(self, task: Task) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Advance process supervision; default: nothing long-lived to supervise."""

    def begin_stop(self) -> None:
        raise NotImplementedError

    def stopped(self) -> bool:
        raise NotImplementedError

    def kill_now(self) -> None:
        raise NotImplementedError

    def check_memory(self) -> None:
        """Restart processes over max_memory (long-lived modes)."""

    def held_pids(self) -> set[int]:
        return set()

    def instances(self, now: float) -> list[dict]:
        return []

    def finished(self, task_id: str, folder: str, error: str = "") -> None:
        """Bookkeeping after a task left this agent (main thread, from an event)."""
        self.running.pop(task_id, None)
        if folder == "done":
            self.tasks_done += 1
        elif folder in ("inbox", "failed") and error:
            # a failed attempt; a release (drain) has no error and a "later"
            # (exit 75) is not a failure of the agent
            self.tasks_failed += 1
            self.last_error = error

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
        }

    def close(self) -> None:
        self.log_file.close()


LOG_FOLDER = "agents/logs"


def log_name(agent: str, shared: bool) -> str:
    """`<agent>.log`; `<agent>@<host>.log` on a shared file system, where hosts may run
    agents of one name and O_APPEND does not make their lines atomic."""
    return f"{agent}@{this_host()}.log" if shared else f"{agent}.log"


def open_agent_log(spec: AgentSpec, ctx: Context) -> RotatingLog:
    """The agent's log: in the workspace's agents/logs/ (made 0755 and opened without
    following links), or the manifest's `log.file`, which its author chose."""
    path = AgentGroup.log_path(spec, ctx)
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
