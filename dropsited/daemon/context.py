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
    # True while a death watch (death_watch.py) will kill the agents if the daemon
    # dies: exec agents then spawn without PDEATHSIG's extra exec per task.
    death_watch: bool = False
    # Held while a thread spawns and registers a child, and while the loop looks
    # for children nobody holds: a child between the two is never taken for an orphan.
    spawn_lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, *event: object) -> None:
        self.events.put(event)


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
