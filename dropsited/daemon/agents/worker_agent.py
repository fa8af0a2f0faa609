"""worker mode: long-lived processes exchanging one JSON line per task on stdin/stdout.

The daemon writes the task as one line of JSON; the worker answers with one
line: a reply object (docs/PROTOCOL.md, "Worker mode"). Lines that are not
JSON objects are copied to the agent's log and otherwise ignored.
"""

from __future__ import annotations

import os
import queue
import select
import threading

from ...protocol import Task
from ..context import log
from ..events import Finished, Ready, RestartInstance
from ..supervision.exits import exit_details, exit_text
from ..supervision.spawner import Child
from ..supervision.states import AgentState
from ..supervision.supervised import Supervised
from .interrupt import Interrupt
from .long_lived import LongLivedGroup
from .outcome import STDERR_TAIL_LINES, Kind, Outcome, from_reply, parse_reply_line, timed_out_after
from .settle import Settled, release, settle
from .soft_timeout import SoftTimeout

WRITE_DEADLINE = 60.0  # writing a task to a worker without `timeout` gives up after this
OVERSIZE = object()  # readline(): a line over the limit was read and thrown away


class LineReader:
    """Reads newline-terminated lines from a pipe with a deadline (select + os.read).

    A line longer than `max_line` is not kept: its bytes are read and dropped up to its
    newline, and `readline` returns OVERSIZE, so a worker's output never costs the
    daemon more than `max_line` of memory."""

    def __init__(self, fd: int, max_line: int) -> None:
        self.fd = fd
        self.max_line = max_line
        self.buffer = b""
        self.eof = False
        self._skipping = False

    def readline(self, timeout: float | None) -> bytes | object | None:
        """A line (without newline), OVERSIZE, None on timeout; b"" only at end of file
        with nothing buffered."""
        while b"\n" not in self.buffer or self._skipping:
            if self._skipping and b"\n" in self.buffer:
                self.buffer = self.buffer.split(b"\n", 1)[1]
                self._skipping = False
                return OVERSIZE
            if self.eof:
                line, self.buffer = self.buffer, b""
                if self._skipping:
                    self._skipping = False
                    return OVERSIZE
                return line
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buffer += chunk
            if len(self.buffer) > self.max_line and b"\n" not in self.buffer:
                self.buffer, self._skipping = b"", True
            elif self._skipping and b"\n" not in self.buffer:
                self.buffer = b""
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > self.max_line:
            return OVERSIZE
        return line


def write_all(fd: int, data: bytes, deadline: float, clock, stop) -> bool:
    """Write `data` to a non-blocking pipe by `deadline`; False if it did not all go
    (the worker does not read its stdin) or `stop()` asked to give up."""
    view = memoryview(data)
    while view:
        left = deadline - clock()
        if left <= 0 or stop():
            return False
        _, ready, _ = select.select([], [fd], [], min(left, 0.25))
        if not ready:
            continue
        try:
            view = view[os.write(fd, view[:65536]):]
        except BlockingIOError:
            continue
    return True


class WorkerInstance(Supervised):
    """One worker process plus the thread that talks to it."""

    def __init__(self, group: WorkerAgent, index: int) -> None:
        super().__init__(group.spec, group.ctx, group.env, group.log_file, index, stdin_pipe=True)
        self.group = group
        self.current: Task | None = None
        self.inbox: queue.SimpleQueue | None = None
        # Set by the main thread when a control request stops this process mid-task: the
        # I/O thread then records the task by it once the process is gone.
        self.interrupt: Interrupt | None = None
        self.on_spawn = self._spawned
        self.on_exit = self._gone

    def idle(self) -> bool:
        # With a ready signal a worker takes tasks once RUNNING; without, from its start.
        up = (AgentState.RUNNING,) if self.spec.readiness else (AgentState.STARTING,
                                                                 AgentState.RUNNING)
        return (self.state in up and self.current is None
                and self.inbox is not None and not self.stop_requested and not self.memory_hit)

    def give(self, task: Task) -> None:
        self.current = task
        self.inbox.put(task)

    def _spawned(self, child: Child) -> None:
        self.interrupt = None  # an interrupt that came after the last task is not this child's
        self.inbox = queue.SimpleQueue()
        threading.Thread(target=self._talk, args=(child, self.inbox), daemon=True,
                         name=f"{self.name}-io").start()

    def _gone(self, child: Child) -> None:
        if self.inbox is not None:
            self.inbox.put(None)
            self.inbox = None

    def _talk(self, child: Child, inbox: queue.SimpleQueue) -> None:
        reader = LineReader(child.stdout.fileno(), self.ctx.ds.store.max_task_bytes)
        os.set_blocking(child.stdin.fileno(), False)
        if self.spec.ready == "line":
            self._await_ready_line(child, reader)
        while (task := inbox.get()) is not None:
            try:
                settled, error = self._one(child, reader, task)
            except Exception as exc:  # never let the I/O thread die with a task in hand
                log.exception("%s: talking to the worker about %s failed", self.name, task.id)
                outcome = Outcome(Kind.FAIL, error=f"the daemon could not run this task: {exc}")
                settled, error = settle(self.ctx, task, outcome, self.group.name), outcome.error
            self.ctx.post(Finished(self.group.name, task.id, settled, error))
        child.stdout.close()

    def _await_ready_line(self, child: Child, reader: LineReader) -> None:
        """Read stdout until `{"ready": true}` (then tell the loop), end of file or a kill;
        other lines go to the log. Not ready by start_timeout is the loop's to judge."""
        while not self.group.kill_requested:
            line = reader.readline(0.25)
            if line is None:
                continue
            if line is OVERSIZE:
                self.log_file.write(b"[stdout line over the size limit, dropped]\n")
                continue
            if line == b"" and reader.eof:
                return
            value = parse_reply_line(line)
            if value is not None and value.get("ready") is True:
                self.log_file.write(line[:4096] + b"\n")
                self.ctx.post(Ready(self.group.name, self.index, child.pid))
                return
            self.log_file.write(b"[stdout before the ready line] " + line[:4096] + b"\n")

    def _one(self, child: Child, reader: LineReader, task: Task) -> tuple[Settled, str]:
        timeout = self.spec.timeout
        started = self.ctx.clock()
        deadline = None if timeout is None else started + timeout
        line = task.to_json(indent=None) + b"\n"
        write_by = deadline if deadline is not None else started + WRITE_DEADLINE
        try:
            sent = write_all(child.stdin.fileno(), line, write_by, self.ctx.clock,
                             lambda: self.group.kill_requested or self.interrupt is not None)
        except (BrokenPipeError, OSError, ValueError):
            if self.interrupt is not None:
                return self.interrupt.settle(self.ctx, task, self.group.name), ""
            return release(self.ctx.ds, task, "worker was not accepting input", self.group.name), ""
        if not sent:
            if self.group.kill_requested:
                return release(self.ctx.ds, task, "daemon stopping", self.group.name), ""
            if self.interrupt is not None:
                return self.interrupt.settle(self.ctx, task, self.group.name), ""
            self.ctx.post(RestartInstance(self.group.name, self.index))
            waited = write_by - started
            outcome = Outcome(Kind.FAIL, error=f"timeout: the worker did not read its task within "
                              f"{waited:g}s; restarted", details={"reason": "timeout"})
            return settle(self.ctx, task, outcome, self.group.name), outcome.error
        outcome = self._await_reply(child, reader, task, deadline)
        if outcome is None:  # daemon stopping at once
            return release(self.ctx.ds, task, "daemon stopping", self.group.name), ""
        if isinstance(outcome, Interrupt):  # stopped on request, and now gone
            return outcome.settle(self.ctx, task, self.group.name), ""
        return settle(self.ctx, task, outcome, self.group.name), outcome.error

    def _await_reply(self, child: Child, reader: LineReader, task: Task,
                     deadline: float | None) -> Outcome | Interrupt | None:
        """The worker's reply; its Interrupt once a process stopped on request is gone
        (what it still prints is logged, not taken); None when the daemon stops at once."""
        timeout = self.spec.timeout
        soft = SoftTimeout(self.spec, self.ctx.clock(), self.name)
        while True:
            if self.group.kill_requested:
                return None
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - self.ctx.clock()))
            wait = soft.bound(wait, self.ctx.clock())
            soft.maybe_send(child, self.ctx.clock())
            line = reader.readline(wait)
            interrupt = self.interrupt
            if interrupt is not None and line is not None:
                if line == b"" and reader.eof:
                    return interrupt
                if line is not OVERSIZE:
                    self.log_file.write(b"[stdout after a stop request, not taken] "
                                        + line[:4096] + b"\n")
                continue
            if line is None:
                if interrupt is None and deadline is not None and self.ctx.clock() >= deadline:
                    self.ctx.post(RestartInstance(self.group.name, self.index))
                    return timed_out_after(timeout)
                continue
            if line is OVERSIZE:
                self.log_file.write(b"[stdout line over the size limit, dropped]\n")
                return Outcome(Kind.FAIL, error=f"reply over the size limit "
                               f"({reader.max_line} bytes)", details={"reason": "result_too_large"})
            if line == b"" and reader.eof:
                if self.group.kill_requested:
                    return None  # killed by kill_now, not by the task: requeue unused
                return self._died(child)
            outcome = self._reply_for(task, line)
            if outcome is not None:
                return outcome

    def _reply_for(self, task: Task, line: bytes) -> Outcome | None:
        """The outcome a stdout line gives `task`; None for a line that is no reply to it
        (logged): not a JSON object, or a reply naming another task's id."""
        value = parse_reply_line(line)
        if value is None:
            self.log_file.write(b"[stdout, not a reply] " + line[:4096] + b"\n")
            return None
        if "id" in value and value["id"] != task.id:
            shown = str(value["id"])[:80].encode("utf-8", "replace")
            self.log_file.write(b"[reply for id " + shown + b", not the current task "
                                + task.id.encode() + b"; ignored] " + line[:4096] + b"\n")
            return None
        self.log_file.write(line[:65536] + b"\n")
        return from_reply(value)

    def _died(self, child: Child) -> Outcome:
        try:
            code = child.wait(timeout=2.0)
        except Exception:
            code = None
        tail = "\n".join(list(self.stderr_tail)[-STDERR_TAIL_LINES:])
        return Outcome(Kind.FAIL, error=f"worker died mid-task ({exit_text(code)})",
                       details={**exit_details(code), "stderr": tail})


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

    def finished(self, task_id: str, settled: Settled, error: str = "") -> None:
        for worker in self.procs:
            if worker.current is not None and worker.current.id == task_id:
                worker.current = None
        super().finished(task_id, settled, error)

    def _interrupt(self, proc: Supervised, interrupt: Interrupt) -> str | None:
        if proc.current is None:
            return None
        proc.interrupt = interrupt
        return proc.current.id

    def cancel(self, task_id: str, interrupt: Interrupt) -> bool:
        """Stop the instance running `task_id` and start it again (its state is unknown
        after a task cut short); the I/O thread records the task once it is gone."""
        for worker in self.procs:
            if worker.current is not None and worker.current.id == task_id:
                worker.interrupt = interrupt
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

    def instances(self, now: float) -> list[dict]:
        out = []
        for worker in self.procs:
            info = worker.describe(now)
            info["task"] = worker.current.id if worker.current is not None else None
            out.append(info)
        return out
