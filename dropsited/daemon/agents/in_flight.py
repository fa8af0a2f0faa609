"""The tasks a worker process holds at once (`prefetch: N`): sent, not yet answered.

A worker instance's sender thread adds a task just before writing its line, its
reader thread takes it out when the reply naming its id arrives (or the oldest,
for a reply without `id`), at its timeout, or when the worker ends. Each task is
taken out exactly once, under one lock, so a reply racing a timeout or a death
can never settle a task twice. The main thread only reads the table's size (room
for more) and its ids (status).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ...protocol import Task
from .soft_timeout import SoftTimeout


@dataclass(frozen=True)
class Sent:
    """One task in flight: when its line went out, when it times out (None: never) and
    its soft timeout (the signal sent before that)."""

    task: Task
    sent_at: float
    deadline: float | None
    soft: SoftTimeout


class InFlight:
    """Insertion-ordered (oldest first) table of the tasks one worker process holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: OrderedDict[str, Sent] = OrderedDict()
        self._queued = 0  # handed to the sender thread, not yet written

    def __len__(self) -> int:
        return len(self._tasks)

    def load(self) -> int:
        """Tasks this process holds: queued for its sender plus in flight (the slot count)."""
        with self._lock:
            return self._queued + len(self._tasks)

    def reserve(self) -> None:
        """The main thread handed a task to the sender thread."""
        with self._lock:
            self._queued += 1

    def unreserve(self) -> None:
        """A queued task was given back without being written."""
        with self._lock:
            self._queued -= 1

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def values(self) -> list[Sent]:
        """What is in flight now, oldest first (a copy: the reader's soft timeouts)."""
        with self._lock:
            return list(self._tasks.values())

    def add(self, sent: Sent) -> None:
        """A queued task is about to be written: it is in flight from now on."""
        with self._lock:
            self._queued -= 1
            self._tasks[sent.task.id] = sent

    def take(self, task_id: str) -> Sent | None:
        """The task with this id, removed; None if it is not (or no longer) in flight."""
        with self._lock:
            return self._tasks.pop(task_id, None)

    def take_oldest(self) -> Sent | None:
        with self._lock:
            if not self._tasks:
                return None
            return self._tasks.popitem(last=False)[1]

    def take_expired(self, now: float) -> list[Sent]:
        """Every task past its deadline, removed, oldest first."""
        with self._lock:
            gone = [s for s in self._tasks.values() if s.deadline is not None and now >= s.deadline]
            for sent in gone:
                del self._tasks[sent.task.id]
            return gone

    def next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [s.deadline for s in self._tasks.values() if s.deadline is not None]
        return min(deadlines) if deadlines else None

    def take_all(self) -> list[Sent]:
        """Everything still in flight, removed, oldest first (the worker ended)."""
        with self._lock:
            out = list(self._tasks.values())
            self._tasks.clear()
            return out
