"""What every agent group shares with the daemon loop: the workspace, the event queue,
the clock, containment, and the daemon's log."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..protocol import DropSite
from .supervision.child import ChildProcess
from .supervision.spawner import Spawner

if TYPE_CHECKING:
    from .containment.containment import Containment
    from .events import Event

log = logging.getLogger("dropsited")


@dataclass
class Context:
    """Shared, long-lived state handed to each agent group.

    Threads never change daemon state directly: they `post` an event and the
    main loop acts on it (the pattern supervisord uses for signals).
    """

    ds: DropSite
    marker: str
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    clock: Callable[[], float] = time.monotonic
    draining: bool = False
    # Keeps agents from outliving the daemon (containment/); None in unit tests.
    containment: Containment | None = None
    # Makes agent processes (supervision/spawner.py): ChildProcess.spawn, or a test's.
    spawn: Spawner = ChildProcess.spawn
    # Held while a thread spawns and registers a child, and while the loop looks
    # for children nobody holds: a child between the two is never taken for an orphan.
    spawn_lock: threading.Lock = field(default_factory=threading.Lock)
    # Outcomes the file system refused for now (disk full, a network mount gone):
    # task id -> (task, outcome, agent), written again by the loop (settle.py).
    parked: dict = field(default_factory=dict)
    # The event hooks (hooks/sink.py's Hooks), None when the manifest has none or in
    # unit tests: told of settled tasks and agent events, from any thread.
    hooks: Any = None

    def post(self, event: Event) -> None:
        """Tell the loop (from any thread): one of the frozen values of events.py."""
        self.events.put(event)

    def agent_event(self, kind: str, agent: str, **fields: Any) -> None:
        """An agent's process went FATAL or is restarted: the hooks hear of it."""
        if self.hooks is not None:
            self.hooks.agent_event(kind, agent, fields)

    def watch_up(self) -> bool:
        """True while the death watch runs: exec agents may skip PDEATHSIG's exec."""
        return self.containment is not None and self.containment.watch_up()

    def track(self, pid: int) -> None:
        """An agent was spawned: the death watch kills its group if the daemon dies."""
        if self.containment is not None:
            self.containment.track(pid)

    def untrack(self, pid: int) -> None:
        """An agent was reaped: its pid may be reused, so the watch must forget it."""
        if self.containment is not None:
            self.containment.untrack(pid)


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
