"""worker mode: long-lived processes exchanging one JSON line per task on stdin/stdout.

The daemon writes the task as one line of JSON; the worker answers with one
line: a reply object (docs/PROTOCOL.md, "Worker mode"). Lines that are not
JSON objects are copied to the agent's log and otherwise ignored.
"""

from __future__ import annotations

import json
import os
import queue
import select
import threading

from ..protocol import Task
from .child import ChildProcess
from .long_lived import LongLivedGroup
from .outcome import FAIL, Outcome, from_reply_line
from .settle import release, settle
from .states import AgentState
from .supervised import Supervised

MAX_LINE = 16 * 1024 * 1024


class LineReader:
    """Reads newline-terminated lines from a pipe with a deadline (select + os.read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def readline(self, timeout: float | None) -> bytes | None:
        """A line (without newline), None on timeout; b"" only at end of file with nothing buffered."""
        while b"\n" not in self.buffer:
            if self.eof:
                line, self.buffer = self.buffer, b""
                return line
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buffer += chunk
            if len(self.buffer) > MAX_LINE:
                line, self.buffer = self.buffer, b""
                return line
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


class WorkerInstance(Supervised):
    """One worker process plus the thread that talks to it."""

    def __init__(self, group: WorkerAgent, index: int) -> None:
        super().__init__(group.spec, group.ctx, group.env, group.log_file, index, stdin_pipe=True)
        self.group = group
        self.current: Task | None = None
        self.inbox: queue.SimpleQueue | None = None
        self.on_spawn = self._spawned
        self.on_exit = self._gone

    def idle(self) -> bool:
        return (self.state in (AgentState.STARTING, AgentState.RUNNING) and self.current is None
                and self.inbox is not None and not self.stop_requested and not self.memory_hit)

    def give(self, task: Task) -> None:
        self.current = task
        self.inbox.put(task)

    def _spawned(self, child: ChildProcess) -> None:
        self.inbox = queue.SimpleQueue()
        threading.Thread(target=self._talk, args=(child, self.inbox), daemon=True,
                         name=f"{self.name}-io").start()

    def _gone(self, child: ChildProcess) -> None:
        if self.inbox is not None:
            self.inbox.put(None)
            self.inbox = None

    def _talk(self, child: ChildProcess, inbox: queue.SimpleQueue) -> None:
        reader = LineReader(child.popen.stdout.fileno())
        while (task := inbox.get()) is not None:
            folder, error = self._one(child, reader, task)
            self.ctx.post("finished", self.group.name, task.id, folder, error)
        child.popen.stdout.close()

    def _one(self, child: ChildProcess, reader: LineReader, task: Task) -> tuple[str, str]:
        try:
            line = json.dumps(task.to_dict(), default=str, ensure_ascii=False).encode() + b"\n"
            child.popen.stdin.write(line)
            child.popen.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            release(self.ctx.ds, task, "worker was not accepting input", self.group.name)
            return "inbox", ""
        outcome = self._await_reply(child, reader, task)
        if outcome is None:  # daemon stopping at once
            release(self.ctx.ds, task, "daemon stopping", self.group.name)
            return "inbox", ""
        return settle(self.ctx.ds, task, outcome, self.group.name), outcome.error

    def _await_reply(self, child: ChildProcess, reader: LineReader, task: Task) -> Outcome | None:
        timeout = self.spec.timeout
        deadline = None if timeout is None else self.ctx.clock() + timeout
        while True:
            if self.group.kill_requested:
                return None
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - self.ctx.clock()))
            line = reader.readline(wait)
            if line is None:
                if deadline is not None and self.ctx.clock() >= deadline:
                    self.ctx.post("restart", self.group.name, self.index)
                    return Outcome(FAIL, error=f"timeout: killed after {timeout:g}s",
                                   details={"reason": "timeout"})
                continue
            if line == b"" and reader.eof:
                if self.group.kill_requested:
                    return None  # killed by kill_now, not by the task: requeue unused
                return self._died(child)
            outcome = from_reply_line(line)
            if outcome is not None:
                self.log_file.write(line[:65536] + b"\n")
                return outcome
            self.log_file.write(b"[stdout, not a reply] " + line[:4096] + b"\n")

    def _died(self, child: ChildProcess) -> Outcome:
        try:
            code = child.popen.wait(timeout=2.0)
        except Exception:
            code = None
        tail = "\n".join(list(self.stderr_tail)[-20:])
        what = (f"killed by signal {-code}" if code is not None and code < 0
                else f"exit status {code}")
        return Outcome(FAIL, error=f"worker died mid-task ({what})",
                       details={"exit_code" if code is None or code >= 0 else "signal":
                                code if code is None or code >= 0 else -code, "stderr": tail})


class WorkerAgent(LongLivedGroup):
    mode = "worker"

    def __init__(self, spec, ctx) -> None:
        self.kill_requested = False
        super().__init__(spec, ctx)

    def _new(self, index: int) -> WorkerInstance:
        return WorkerInstance(self, index)

    def _may_stop(self, proc: Supervised) -> bool:
        return proc.current is None

    def wanted(self) -> list[WorkerInstance]:
        """The instances that take tasks; those beyond the concurrency are on their way out."""
        return self.procs[:self.spec.concurrency]

    def free_slots(self) -> int:
        return sum(1 for w in self.wanted() if w.idle())

    def assign(self, task: Task) -> None:
        worker = next(w for w in self.wanted() if w.idle())
        self.running[task.id] = task
        worker.give(task)

    def finished(self, task_id: str, folder: str, error: str = "") -> None:
        for worker in self.procs:
            if worker.current is not None and worker.current.id == task_id:
                worker.current = None
        super().finished(task_id, folder, error)

    def restart_instance(self, index: int) -> None:
        for worker in self.procs:
            if worker.index == index:
                worker.begin_stop(restart=True)

    def kill_now(self) -> None:
        self.kill_requested = True
        super().kill_now()

    def instances(self, now: float) -> list[dict]:
        out = []
        for worker in self.procs:
            info = worker.describe(now)
            info["task"] = worker.current.id if worker.current is not None else None
            out.append(info)
        return out
