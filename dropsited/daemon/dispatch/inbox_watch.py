"""File-system events on inbox/, turned into hints for the daemon's loop.

Events are only hints: the loop rescans the whole folder at start, after an
inotify queue overflow, and at a slow interval, so a lost event delays a task
but never loses it. With `poll` set (network file systems, where events do
not cross hosts) no observer runs and the loop rescans every `poll` seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from ...protocol.waiting import deliver_moves_at_once

_OVERFLOW_TEXT = "overflow"

# The kernel events that can change what inbox/ holds: an entry appears (create,
# rename in), is written (modify: a writer that keeps its fd open, or whose
# background child inherited it, never closes), is finished (close after write)
# or goes (rename out, delete). Opens and reads are left out of the inotify mask:
# every claim and every index parse opens a task file, and each of those events
# would wake three watchdog threads and the loop for nothing.
_EVENTS = [FileCreatedEvent, FileMovedEvent, FileModifiedEvent, FileClosedEvent,
           FileDeletedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[str | None], None]) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        path = getattr(event, "dest_path", "") or event.src_path
        self.notify(os.path.basename(os.fsdecode(path)))


class _OverflowSpotter(logging.Handler):
    """watchdog logs inotify queue overflows but has no callback for them."""

    def __init__(self, notify: Callable[[str | None], None]) -> None:
        super().__init__(logging.WARNING)
        self.notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        if _OVERFLOW_TEXT in record.getMessage().lower():
            self.notify(None)  # None means: rescan everything


class InboxWatcher:
    """Calls `notify(name)` for each changed inbox entry, `notify(None)` to ask for a rescan."""

    def __init__(self, inbox: Path, notify: Callable[[str | None], None]) -> None:
        self.inbox = inbox
        self.notify = notify
        self._observer: Observer | None = None
        self._spotter = _OverflowSpotter(notify)
        self._also: list[tuple[Path, Callable[[str | None], None]]] = []

    def also_watch(self, folder: Path, notify: Callable[[str | None], None]) -> None:
        """Another folder on the same observer (the control folder), before `start`;
        an overflow asks it for a rescan too."""
        self._also.append((folder, notify))
        inbox_notify = self._spotter.notify
        self._spotter.notify = lambda name: (inbox_notify(name), notify(name))

    def start(self) -> None:
        deliver_moves_at_once()  # a claim renames out of inbox/: no 0.5 s hold behind it
        observer = Observer()
        observer.schedule(_Handler(self.notify), str(self.inbox), recursive=False,
                          event_filter=_EVENTS)
        for folder, notify in self._also:
            observer.schedule(_Handler(notify), str(folder), recursive=False,
                              event_filter=_EVENTS)
        observer.daemon = True
        observer.start()
        logging.getLogger("watchdog").addHandler(self._spotter)
        self._observer = observer

    def stop(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._spotter)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
