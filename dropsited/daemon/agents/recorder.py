"""Writing outcomes off the dispatch path: one thread per agent settles its tasks.

A worker's reader thread (or an exec agent's slot thread) hands each outcome here and
goes straight back to its process, so a fast worker never waits for the daemon's
bookkeeping. The recorder settles outcomes in arrival order, and in durable mode
every outcome that arrived while the previous batch was being written shares one
group commit (protocol/group_commit.py): one sync of the files, one fsync of each
destination folder. Only after that does it post `Finished` for each task, so
nothing is reported done (status, counters, hooks) before its sync.

No window is waited for: a batch is whatever queued up during the last sync, so a
lone task is written as soon as it arrives and a busy agent's tasks batch themselves.
"""

from __future__ import annotations

import queue
import threading

from ...protocol import DropSiteError, Task
from ...protocol.errors import ClaimLost
from ...protocol.group_commit import Failure
from ...protocol.task import utcnow_iso
from ..context import Context, log
from ..events import Finished
from .interrupt import Interrupt
from .outcome import Kind, Outcome
from .settle import Settled, release, settle

MAX_BATCH = 256  # outcomes per group commit: bounds the open temp files of one batch


class Recorder:
    """Settles (task, outcome) pairs of one agent on its own thread, in batches."""

    def __init__(self, ctx: Context, agent: str) -> None:
        self.ctx = ctx
        self.agent = agent
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{agent}-record")
        self._thread.start()

    def record(self, task: Task, outcome: Outcome) -> None:
        """Settle `task` with `outcome` soon; `Finished` follows once it is stored."""
        self._queue.put((task, outcome, ""))

    def release(self, task: Task, reason: str) -> None:
        """Give `task` back unused soon (a stop, a worker that ended before answering)."""
        self._queue.put((task, None, reason))

    def interrupted(self, task: Task, interrupt: Interrupt) -> None:
        """Record `task` where a control request's `interrupt` sends it (stop: back unused;
        cancel: failed/ or inbox/), in order with this agent's other outcomes."""
        self._queue.put((task, interrupt, ""))

    def close(self, timeout: float = 5.0) -> None:
        """Settle what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, last = [first], False
            while len(items) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    last = True
                    break
                items.append(item)
            try:
                results = self._settle_batch(items)
            except Exception as exc:  # never let the thread die with tasks in hand
                log.exception("%s: recording %d outcomes failed", self.agent, len(items))
                results = [(Settled.ERROR, str(exc))] * len(items)
            for (task, _, _), (settled, error) in zip(items, results, strict=True):
                self.ctx.post(Finished(self.agent, task.id, settled, error))
            if last:
                return

    def _settle_batch(self, items: list) -> list[tuple[Settled, str]]:
        store = self.ctx.ds.store
        with store.group_commit() as batch:
            if batch is None:  # fast mode: nothing to share
                return [self._settle_one(*item) for item in items]
            results, moved = [], []
            for item in items:
                before = len(batch)
                results.append(self._settle_one(*item))
                moved.append(len(batch) > before)
            failures = iter(batch.flush())
        for i, item in enumerate(items):
            if moved[i] and (failure := next(failures)) is not None:
                results[i] = self._after_failure(item, failure)
        return results

    def _settle_one(self, task: Task, outcome: Outcome | Interrupt | None,
                    reason: str) -> tuple[Settled, str]:
        if outcome is None:
            return release(self.ctx.ds, task, reason, self.agent), ""
        if isinstance(outcome, Interrupt):
            return outcome.settle(self.ctx, task, self.agent), ""
        try:
            return settle(self.ctx, task, outcome, self.agent), outcome.error
        except Exception as exc:
            log.exception("%s: recording %s failed", self.agent, task.id)
            failed = Outcome(Kind.FAIL, error=f"the daemon could not record this task: {exc}")
            return settle(self.ctx, task, failed, self.agent), failed.error

    def _after_failure(self, item: tuple, failure: Failure) -> tuple[Settled, str]:
        """A move of the batch did not commit: the claim was lost meanwhile (the result
        goes to late-results, as a single move does), or the file system refused the
        write (settled again from the task file, which is still held: parked if need be)."""
        task, outcome, reason = item
        if isinstance(failure.error, ClaimLost):
            log.warning("%s: %s; result kept in late-results.jsonl", self.agent, failure.error)
            self.ctx.ds.store.log_late_result({
                "task_id": task.id, "at": utcnow_iso(), "outcome": failure.dest,
                "agent": self.agent, "entry": task.history[-1], "result": task.result})
            return Settled.LOST, ""
        if failure.committed:  # only its final name failed: the copy is in quarantine/
            log.error("%s: %s: %s", self.agent, task.id, failure.error)
            return Settled.ERROR, str(failure.error)
        try:
            again = self.ctx.ds.store.load_entry(failure.src_folder, failure.src_name)
        except (DropSiteError, OSError) as exc:
            log.error("%s: %s: %s; and it cannot be read again: %s", self.agent, task.id,
                      failure.error, exc)
            return Settled.ERROR, str(failure.error)
        return self._settle_one(again, outcome, reason)
