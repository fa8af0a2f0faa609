"""The two threads that talk to one worker process: up to `prefetch` tasks in flight.

The sender writes each task it is handed as one JSON line, as soon as it is handed:
with `prefetch: N` a worker holds up to N tasks, so it never waits for the daemon
between two of them. The reader matches every reply line to its task by `id` (a
reply without `id` is taken for the oldest task in flight, which is the current one
of a worker that answers in order), hands the outcome to the agent's Recorder (the
write happens off this thread) and wakes the loop, which claims the next task.

Every task leaves the in-flight table exactly once (in_flight.py):
- a reply settles it;
- past its `timeout` (counted from when its line was written) it fails that attempt
  and the worker is restarted; what else it held goes back unused;
- when the worker ends, the oldest task it held fails that attempt ("worker died
  mid-task", as with prefetch 1) unless a timeout already took the blame, and every
  other one goes back to inbox/ unused;
- when the daemon stops at once, everything goes back unused;
- when a control request stops the process (interrupt.py), what it held is recorded by
  that Interrupt once the process is gone (its later lines are logged, not taken); a
  cancel restarts the process: the cancelled task is recorded by its Interrupt and
  every other task it held goes back unused.

With `ready: line` the reader first waits for the worker's `{"ready": true}` line
(posting `Ready`), and the sender writes no task before that line was read.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import TYPE_CHECKING

from ...protocol import Task
from ..events import Ready, Replied, RestartInstance
from ..supervision.exits import exit_details, exit_text
from ..supervision.spawner import Child
from .in_flight import InFlight, Sent
from .interrupt import Interrupt
from .outcome import STDERR_TAIL_LINES, Kind, Outcome, from_reply, parse_reply_line, timed_out_after
from .soft_timeout import SoftTimeout
from .worker_lines import OVERSIZE, LineReader, write_all

if TYPE_CHECKING:
    from .worker_agent import WorkerInstance

WRITE_DEADLINE = 60.0  # writing a task to a worker without `timeout` gives up after this
POLL_SLICE = 0.25  # the reader looks at deadlines and stop requests this often
READER_JOIN = 5.0  # the sender waits this long for the reader before giving back leftovers


class Pipeline:
    """One spawned worker process, its sender and reader threads, and its in-flight table."""

    def __init__(self, instance: WorkerInstance, child: Child) -> None:
        self.instance = instance
        self.group = instance.group
        self.ctx = instance.ctx
        self.child = child
        self.flight = InFlight()
        self.blamed = False  # a timeout already failed one task: the rest go back unused
        # Set by the main thread when a control request stops this process: `interrupt`
        # records the task `interrupt_task` (None: every task it holds) once it is gone.
        self.interrupt: Interrupt | None = None
        self.interrupt_task: str | None = None
        self._queued_ids: set[str] = set()  # handed to the sender, not yet taken by it
        # Set by the reader once the ready line was read (at once without `ready: line`).
        self.ready_read = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"{instance.name}-read")
        self._sender = threading.Thread(target=self._send, daemon=True,
                                        name=f"{instance.name}-send")
        self._reader.start()
        self._sender.start()

    # -- main thread ----------------------------------------------------------------
    def give(self, task: Task) -> None:
        self.flight.reserve()
        self._queued_ids.add(task.id)
        self._queue.put(task)

    def interrupt_all(self, interrupt: Interrupt) -> list[str]:
        """The process is stopped on request: everything it holds is recorded by
        `interrupt` once it is gone. The ids it holds now (the ones interrupted)."""
        if self.interrupt is None:
            self.interrupt, self.interrupt_task = interrupt, None
        return self.flight.ids() + sorted(self._queued_ids)

    def cancel(self, task_id: str, interrupt: Interrupt) -> bool:
        """`task_id` is cancelled: False when this process does not hold it. The caller
        restarts the process; the other tasks it holds then go back unused."""
        if self.interrupt is not None or (task_id not in self.flight.ids()
                                          and task_id not in self._queued_ids):
            return False
        self.interrupt, self.interrupt_task = interrupt, task_id
        return True

    def close(self) -> None:
        """The process was reaped: the sender gives back whatever is left, then ends."""
        self._queue.put(None)

    # -- the sender thread ------------------------------------------------------------
    def _send(self) -> None:
        fd = self.child.stdin.fileno()
        os.set_blocking(fd, False)
        broken = False
        while (task := self._queue.get()) is not None:
            self._queued_ids.discard(task.id)
            self._await_ready_read()
            if broken or self.group.kill_requested or self.interrupt is not None:
                self.flight.unreserve()
                if self.interrupt is not None and not self.group.kill_requested:
                    self._by_interrupt(task)
                    continue
                self._give_back(task, "daemon stopping" if self.group.kill_requested
                                else "worker was not accepting input")
                continue
            broken = not self._write(fd, task)
        self._reader.join(READER_JOIN)
        for sent in self.flight.take_all():  # sent after the reader saw the end
            if self.interrupt is not None and not self.group.kill_requested:
                self._by_interrupt(sent.task)
            else:
                self._give_back(sent.task, "worker ended before answering")
        self.child.stdin.close()

    def _await_ready_read(self) -> None:
        """No task line goes out before the reader has read the ready line (or the end)."""
        while not self.ready_read.wait(POLL_SLICE):
            if self.group.kill_requested or not self._reader.is_alive():
                return

    def _write(self, fd: int, task: Task) -> bool:
        """Write one task line; False once the pipe is broken."""
        timeout = self.instance.spec.timeout
        now = self.ctx.clock()
        deadline = None if timeout is None else now + timeout
        soft = SoftTimeout(self.instance.spec, now, self.instance.name)
        self.flight.add(Sent(task, now, deadline, soft))
        write_by = deadline if deadline is not None else now + WRITE_DEADLINE
        try:
            if write_all(fd, task.to_json(indent=None) + b"\n", write_by, self.ctx.clock,
                         lambda: self.group.kill_requested or self.interrupt is not None):
                return True
            broken = False
        except (BrokenPipeError, OSError, ValueError):
            broken = True
        if self.flight.take(task.id) is None:
            return not broken  # the reader already settled it (the worker ended)
        if self.interrupt is not None and not self.group.kill_requested:
            self._by_interrupt(task)
        elif broken:
            self._give_back(task, "worker was not accepting input")
        elif self.group.kill_requested:
            self._give_back(task, "daemon stopping")
        else:
            self.blamed = True
            self.ctx.post(RestartInstance(self.group.name, self.instance.index))
            waited = write_by - now
            self._settle(task, Outcome(
                Kind.FAIL, error=f"timeout: the worker did not read its task within "
                f"{waited:g}s; restarted", details={"reason": "timeout"}))
        return not broken

    # -- the reader thread -------------------------------------------------------------
    def _read(self) -> None:
        reader = LineReader(self.child.stdout.fileno(), self.ctx.ds.store.max_task_bytes)
        try:
            if self.instance.spec.ready == "line" and not self._await_ready_line(reader):
                return
            self.ready_read.set()
            while not self.group.kill_requested:
                self._expire()
                line = reader.readline(self._wait())
                if line is None:
                    continue
                if self.interrupt is not None and not (line == b"" and reader.eof):
                    if line is not OVERSIZE:  # stopped on request: nothing more is taken
                        self.instance.log_file.write(b"[stdout after a stop request, not taken] "
                                                     + line[:4096] + b"\n")
                    continue
                if line is OVERSIZE:
                    self.instance.log_file.write(b"[stdout line over the size limit, dropped]\n")
                    self._answer(self.flight.take_oldest(), Outcome(
                        Kind.FAIL, error=f"reply over the size limit ({reader.max_line} bytes)",
                        details={"reason": "result_too_large"}))
                elif line == b"" and reader.eof:
                    self._ended()
                    return
                else:
                    self._line(line)
            for sent in self.flight.take_all():
                self._give_back(sent.task, "daemon stopping")
        finally:
            self.ready_read.set()
            self.child.stdout.close()

    def _await_ready_line(self, reader: LineReader) -> bool:
        """Read stdout until `{"ready": true}` (then tell the loop): True; False at end of
        file or a kill. Other lines go to the log; not ready by start_timeout is the
        loop's to judge."""
        log_file = self.instance.log_file
        while not self.group.kill_requested:
            line = reader.readline(POLL_SLICE)
            if line is None:
                continue
            if line is OVERSIZE:
                log_file.write(b"[stdout line over the size limit, dropped]\n")
                continue
            if line == b"" and reader.eof:
                self._ended()
                return False
            value = parse_reply_line(line)
            if value is not None and value.get("ready") is True:
                log_file.write(line[:4096] + b"\n")
                self.ctx.post(Ready(self.group.name, self.instance.index, self.child.pid))
                return True
            log_file.write(b"[stdout before the ready line] " + line[:4096] + b"\n")
        return False

    def _wait(self) -> float:
        now = self.ctx.clock()
        wait = POLL_SLICE
        deadline = self.flight.next_deadline()
        if deadline is not None and self.interrupt is None:
            wait = max(0.0, min(wait, deadline - now))
        for sent in self.flight.values():
            wait = sent.soft.bound(wait, now)
        return wait

    def _expire(self) -> None:
        """Soft timeouts due are sent; tasks past their timeout fail that attempt and the
        worker is restarted once (not after a stop request: the stop is under way)."""
        now = self.ctx.clock()
        for sent in self.flight.values():
            sent.soft.maybe_send(self.child, now)
        if self.interrupt is not None:
            return
        expired = self.flight.take_expired(now)
        if not expired:
            return
        self.blamed = True
        self.ctx.post(RestartInstance(self.group.name, self.instance.index))
        for sent in expired:
            self._answer(sent, timed_out_after(self.instance.spec.timeout))

    def _line(self, line: bytes) -> None:
        log_file = self.instance.log_file
        value = parse_reply_line(line)
        if value is None:
            log_file.write(b"[stdout, not a reply] " + line[:4096] + b"\n")
            return
        if "id" in value:
            reply_id = value["id"]
            sent = self.flight.take(reply_id) if isinstance(reply_id, str) else None
            if sent is None:
                shown = str(reply_id)[:80].encode("utf-8", "replace")
                log_file.write(b"[reply for id " + shown + b", not a task in flight; ignored] "
                               b"(not the current task nor one held) " + line[:4096] + b"\n")
                return
        else:
            sent = self.flight.take_oldest()
            if sent is None:
                log_file.write(b"[reply without id, no task in flight; ignored] "
                               + line[:4096] + b"\n")
                return
        log_file.write(line[:65536] + b"\n")
        self._answer(sent, from_reply(value))

    def _ended(self) -> None:
        """End of the worker's stdout: it died (or was stopped) with what it held."""
        held = self.flight.take_all()
        if not held:
            return
        first = 0
        if self.interrupt is not None and not self.group.kill_requested:
            for sent in held:
                self._by_interrupt(sent.task)
            return
        if self.group.kill_requested:  # killed by kill_now, not by a task: requeue unused
            first = len(held)
            for sent in held:
                self._give_back(sent.task, "daemon stopping")
        elif not self.blamed:
            self._settle(held[0].task, self._died())
            first = 1
        for sent in held[first:]:
            self._give_back(sent.task, "worker ended before answering")

    def _died(self) -> Outcome:
        try:
            code = self.child.wait(timeout=2.0)
        except Exception:
            code = None
        tail = "\n".join(list(self.instance.stderr_tail)[-STDERR_TAIL_LINES:])
        return Outcome(Kind.FAIL, error=f"worker died mid-task ({exit_text(code)})",
                       details={**exit_details(code), "stderr": tail})

    # -- handing ends to the recorder ---------------------------------------------------
    def _answer(self, sent: Sent | None, outcome: Outcome) -> None:
        if sent is not None:
            self._settle(sent.task, outcome)

    def _settle(self, task: Task, outcome: Outcome) -> None:
        self.group.recorder.record(task, outcome)
        self._wake()

    def _by_interrupt(self, task: Task) -> None:
        """A task of a process stopped on request: the interrupted one(s) by the
        Interrupt, the others of a cancel's restart back to inbox/ unused."""
        if self.interrupt_task is None or self.interrupt_task == task.id:
            self.group.recorder.interrupted(task, self.interrupt)
            self._wake()
        else:
            self._give_back(task, "worker restarted: another task it held was cancelled")

    def _give_back(self, task: Task, reason: str) -> None:
        self.group.recorder.release(task, reason)
        self._wake()

    def _wake(self) -> None:
        """Tell the loop there is room; one Replied per claim round, not one per reply:
        the flag is cleared by the loop's next `free_slots`, which sees this reply."""
        if not self.group.wake_posted:
            self.group.wake_posted = True
            self.ctx.post(Replied(self.group.name))
