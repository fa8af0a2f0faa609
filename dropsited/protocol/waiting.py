"""Waiting until tasks reach done/ or failed/ (or feedback/, blocked/), without a sleep loop.

The protocol core stays standard-library only, so file-system events are a bonus:
when watchdog can be imported and its observer starts (inotify instances are
limited per user), a waiter sleeps until an entry named `<id>.json` appears in a
folder it watches and reacts in milliseconds. Whatever happens it also looks
every SAFETY_INTERVAL, because events do not cross hosts on a network file
system and an inotify queue can overflow. Without events it looks every
POLL_INTERVAL. A look is a few `open` calls per task, never a folder listing.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DropSiteError, InvalidTask, TaskNotFound, WaitTimeout
from .names import check_task_id
from .store import TASK_FOLDERS, BadFile, parse_temp_name
from .task import Task

if TYPE_CHECKING:
    from .workspace import DropSite

FINAL = ("done", "failed")
OPTIONAL_STOPS = ("feedback", "blocked")
POLL_INTERVAL = 0.05
SAFETY_INTERVAL = 1.0
GONE_CHECKS = 3  # a task seen nowhere at this many safety looks in a row has vanished

_QUIET = logging.NullHandler()  # added once: addHandler ignores a handler already there

Progress = Callable[[dict[str, str | None], float], None]


def stop_folders(until: Iterable[str] = ()) -> tuple[str, ...]:
    """done/ and failed/, plus the folders of `until` (feedback, blocked); refuses others."""
    extra = []
    for folder in until:
        if folder not in OPTIONAL_STOPS:
            raise DropSiteError(f"until: {folder!r} is not one of {', '.join(OPTIONAL_STOPS)} "
                                "(done/ and failed/ always end a wait)")
        if folder not in extra:
            extra.append(folder)
    return FINAL + tuple(extra)


class FolderWatch:
    """Wakes a sleeper when one of `names` (None: any entry) appears in, changes in or
    leaves one of `folders` of a workspace."""

    def __init__(self, root: Path, folders: Iterable[str], names: Iterable[str] | None,
                 use_events: bool = True) -> None:
        self.root = Path(root)
        self.folders = tuple(folders)
        self.names = None if names is None else frozenset(names)
        self.use_events = use_events
        self.changed = threading.Event()
        self._observer = None

    @property
    def mode(self) -> str:
        return "events" if self._observer is not None else "poll"

    @property
    def interval(self) -> float:
        """Seconds between looks when nothing wakes the sleeper."""
        return SAFETY_INTERVAL if self._observer is not None else POLL_INTERVAL

    def start(self) -> FolderWatch:
        if self.use_events:
            self._observer = _start_observer(self.root, self.folders, self._saw)
        return self

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def __enter__(self) -> FolderWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _saw(self, name: str | None) -> None:
        if name is None or self.names is None or name in self.names:  # None: events lost
            self.changed.set()

    def sleep(self, seconds: float) -> None:
        """Up to `seconds`, less if a watched name appeared meanwhile (or since the last sleep)."""
        if self.changed.wait(max(0.0, seconds)):
            self.changed.clear()


def _start_observer(root: Path, folders: tuple[str, ...], saw: Callable[[str | None], None]):
    """A running watchdog observer on `folders`, or None when watchdog cannot watch here."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None
    # watchdog logs an error when its reader thread races our stop(); a command line
    # tool without logging set up would print it. Programs that log still see it.
    logging.getLogger("watchdog").addHandler(_QUIET)
    deliver_moves_at_once()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:  # noqa: ANN001 (watchdog's event types)
            path = getattr(event, "dest_path", "") or event.src_path
            saw(os.path.basename(os.fsdecode(path)))

    observer = Observer()
    observer.daemon = True
    try:
        for folder in folders:
            observer.schedule(Handler(), str(root / folder), recursive=False)
        observer.start()
    except Exception:  # inotify limits, an unwatchable file system: polling still works
        observer.stop()
        return None
    return observer


def deliver_moves_at_once() -> None:
    """Stop watchdog from holding a rename's first half for 0.5 s.

    Every move ends with `rename(.<id>~...tmp, <id>.json)` inside the destination
    folder. watchdog delays each IN_MOVED_FROM, hoping to pair it with its
    IN_MOVED_TO, and a reader that picked up the first half sleeps the whole
    0.5 s even when the second half arrives a microsecond later: one wait in
    thirty took half a second. We need names, not paired moves. The daemon's
    inbox watch calls this too: each claim renames a task out of inbox/, and a task
    dropped within half a second of a claim waited behind it.
    """
    for module, cls in (("watchdog.observers.inotify_move_event_grouper", "InotifyMoveEventGrouper"),
                        ("watchdog.observers.inotify_buffer", "InotifyBuffer")):
        try:
            getattr(importlib.import_module(module), cls).delay = 0
        except (ImportError, AttributeError, OSError):
            continue


def arrived(ds: DropSite, task_id: str, folders: tuple[str, ...]) -> tuple[str, Task] | None:
    """(folder, task) when the task is in one of `folders` and readable there, else None."""
    for folder in folders:
        try:
            return folder, ds.store.load(ds.workspace / folder / f"{task_id}.json")
        except FileNotFoundError:
            continue
        except (BadFile, InvalidTask):
            continue  # a foreign writer may still be writing it; look again later
    return None


def where(ds: DropSite, task_id: str) -> str | None:
    """The folder holding the task now; None while it exists only as a mover's temp file."""
    found = ds.store.locate(task_id)
    return found.folder if found else None


def _in_flight(ds: DropSite, task_id: str) -> bool:
    """True while a move of this task is between its unlink and its rename (a temp file)."""
    for folder in TASK_FOLDERS:
        for entry in ds.store.entries(folder):
            parsed = parse_temp_name(entry.name)
            if parsed and parsed[0] == task_id:
                return True
    return False


def exists(ds: DropSite, task_id: str) -> bool:
    """The task is in some folder, or on its way between two (looked at twice: a move
    takes microseconds, and a foreign writer's `mv` leaves no temp file of ours)."""
    for _ in range(2):
        if where(ds, task_id) is not None or _in_flight(ds, task_id):
            return True
        time.sleep(0.01)
    return False


def wait_for(ds: DropSite, task_ids: Iterable[str], timeout: float | None = None,
             until: Iterable[str] = (), *, use_events: bool = True,
             on_progress: Progress | None = None, progress_every: float = 1.0,
             cancel: threading.Event | None = None) -> dict[str, tuple[str, Task]]:
    """Block until every task is in done/ or failed/ (or a folder of `until`).

    Returns {id: (folder, task)} in the order given. Raises InvalidName for a bad
    id, TaskNotFound for a task that does not exist (or vanishes while waited
    for), WaitTimeout once `timeout` seconds pass (None: no limit), and
    WaitTimeout too when `cancel` is set. `on_progress(pending, elapsed)` is
    called about every `progress_every` seconds with the folder of each task
    still awaited.
    """
    ids = list(dict.fromkeys(check_task_id(t) for t in task_ids))
    folders = stop_folders(until)
    start = time.monotonic()
    deadline = None if timeout is None else start + max(0.0, timeout)
    found: dict[str, tuple[str, Task]] = {}
    with FolderWatch(ds.workspace, folders, (f"{t}.json" for t in ids), use_events) as watch:
        # The watch starts before the first look, so an arrival between the two wakes us.
        for task_id in ids:
            if arrived(ds, task_id, folders) is None and not exists(ds, task_id):
                raise TaskNotFound(f"no task {task_id} in {ds.workspace}")
        unseen = dict.fromkeys(ids, 0)
        next_progress = next_safety = start
        while True:
            for task_id in [t for t in ids if t not in found]:
                hit = arrived(ds, task_id, folders)
                if hit is not None:
                    found[task_id] = hit
            if len(found) == len(ids):
                return {t: found[t] for t in ids}
            now = time.monotonic()
            pending = [t for t in ids if t not in found]
            if cancel is not None and cancel.is_set():
                raise _timeout(ds, pending, found, "wait cancelled")
            if deadline is not None and now >= deadline:
                raise _timeout(ds, pending, found, f"timed out after {timeout:g}s")
            if now >= next_safety:
                _check_not_gone(ds, pending, unseen)
                next_safety = now + SAFETY_INTERVAL
            if on_progress is not None and now >= next_progress:
                on_progress({t: where(ds, t) for t in pending}, now - start)
                next_progress = now + progress_every
            moments = [next_safety, deadline, next_progress if on_progress else None]
            watch.sleep(_nap(now, watch.interval, moments, cancellable=cancel is not None))


def _nap(now: float, interval: float, moments: list[float | None], cancellable: bool) -> float:
    """Seconds until the next thing to do (a look, a safety check, the deadline, a progress
    report); at most 0.25 s while a cancel flag must be watched."""
    nap = min([interval] + [t - now for t in moments if t is not None])
    return min(nap, 0.25) if cancellable else nap


def _check_not_gone(ds: DropSite, pending: list[str], unseen: dict[str, int]) -> None:
    for task_id in pending:
        unseen[task_id] = 0 if exists(ds, task_id) else unseen[task_id] + 1
        if unseen[task_id] >= GONE_CHECKS:
            raise TaskNotFound(f"task {task_id} vanished from {ds.workspace} while waited for")


def _timeout(ds: DropSite, pending: list[str], found: dict, why: str) -> WaitTimeout:
    places = {t: where(ds, t) for t in pending}
    shown = ", ".join(f"{t} (in {f}/)" if f else f"{t} (moving)" for t, f in places.items())
    return WaitTimeout(f"{why}; still waiting for {shown}", pending=places, finished=dict(found))
