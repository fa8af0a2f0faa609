"""What every agent group shares with the daemon loop: the workspace, the event queue, logs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol import DropSite
from .death_watch import DeathWatch

log = logging.getLogger("dropsited")


@dataclass
class Context:
    """Shared, long-lived state handed to each agent group.

    Threads never change daemon state directly: they `post` an event and the
    main loop acts on it (the pattern supervisord uses for signals).
    """

    ds: DropSite
    marker: str
    log_dir: Path
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    clock: Callable[[], float] = time.monotonic
    draining: bool = False
    # Kills the agents if the daemon dies (death_watch.py); None in unit tests.
    watch: DeathWatch | None = None
    # Held while a thread spawns and registers a child, and while the loop looks
    # for children nobody holds: a child between the two is never taken for an orphan.
    spawn_lock: threading.Lock = field(default_factory=threading.Lock)
    # Outcomes the file system refused for now (disk full, a network mount gone):
    # task id -> (task, outcome, agent), written again by the loop (settle.py).
    parked: dict = field(default_factory=dict)

    def post(self, *event: object) -> None:
        self.events.put(event)

    def watch_up(self) -> bool:
        """True while the death watch runs: exec agents may skip PDEATHSIG's exec."""
        return self.watch is not None and self.watch.up

    def track(self, pid: int) -> None:
        """An agent was spawned: the death watch kills its group if the daemon dies."""
        if self.watch is not None:
            self.watch.register(pid)

    def untrack(self, pid: int) -> None:
        """An agent was reaped: its pid may be reused, so the watch must forget it."""
        if self.watch is not None:
            self.watch.forget(pid)


_last_logged: dict[str, float] = {}


def log_limited(key: str, message: str) -> None:
    """Log an error at most once a minute per `key` (the rest at debug): a recurring
    condition (a full disk, say) must not write one line per task, chunk or loop turn."""
    now = time.monotonic()
    if now - _last_logged.get(key, float("-inf")) >= 60.0:
        _last_logged[key] = now
        log.error("%s (not repeated for a minute)", message)
    else:
        log.debug("%s", message)
