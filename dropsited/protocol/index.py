"""An in-memory index of one folder's task files, so the next task is found without
parsing the whole folder on every call (0.1.0 parsed every file on every poll).

Each file is parsed once per (name, inode): every write in this protocol makes
a new inode, so a changed inode means changed content. Files that fail to parse
are remembered with their error and re-examined only when their mtime changes;
once older than the grace period they are handed back as `expired_bad` for
quarantine, so a slow writer is never cut off mid-write.
"""

from __future__ import annotations

import bisect
import heapq
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import DropSiteError
from .move_names import is_move_file
from .store import BadFile, TaskStore
from .task import Task


@dataclass(slots=True)
class Entry:
    """What routing needs to know of one task file, kept from its single parse."""

    name: str
    inode: int
    task_id: str
    key: tuple  # (priority, created_at, id): the queue order of 0.1.0
    assigned_to: str | None
    tags: frozenset
    not_before: float | None
    depends_on: tuple
    serial: int = 0  # which item of the order list is this entry's (older ones are dead)


@dataclass(slots=True)
class Bad:
    name: str
    inode: int
    mtime: float
    reason: str


def routable(entry_assigned: str | None, entry_tags: frozenset, agent: str | None,
             tags: frozenset | None, by_name: bool = False,
             exclude: frozenset | None = None) -> bool:
    """0.1.0's routing: never another agent's task; a tag filter needs one shared tag.

    The tag filter applies to tasks assigned to this agent too: 0.1.0's
    AgentLoop lists the inbox filtered by tags first and skips other agents'
    tasks second, so an agent with filter_tags never takes an untagged task,
    even one assigned to it by name. `by_name=True` (the daemon's rule,
    issue 3) takes a task assigned to this agent by name whatever its tags.
    `exclude` (the daemon's catch-all rule): without a tag filter, a task that
    carries one of these tags (declared by other agents) is theirs, not ours.
    """
    if by_name and entry_assigned is not None and entry_assigned == agent:
        return True
    if entry_assigned is not None and entry_assigned != agent:
        return False
    if tags:
        return bool(tags & entry_tags)
    return not (exclude and exclude & entry_tags)


class FolderIndex:
    """Index of one folder (normally inbox/) of a TaskStore."""

    def __init__(self, store: TaskStore, folder: str = "inbox", grace: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.folder = folder
        self.grace = grace
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.bad: dict[str, Bad] = {}
        # (key, serial, name), sorted; items whose serial is not their entry's are
        # dead. Everything before _start is dead, so walking the queue does not
        # re-skip the tasks already claimed from its head.
        self._order: list[tuple[tuple, int, str]] = []
        self._start = 0
        self._serial = 0
        self._ready_heap: list[tuple[float, int, str]] = []  # (not_before, serial, name)
        self._dead_in_order = 0
        self.refresh_interval = 1.0
        # Bumped whenever the order list gains or loses items (add, compaction):
        # a walk of ordered() begun at an older version may skip or repeat items.
        self.version = 0
        self.last_refresh: float | None = None  # time.monotonic() of the last full scan

    # -- keeping in step with the folder ------------------------------------
    def refresh(self) -> list[Bad]:
        """Rescan the folder; returns the bad entries whose grace period is over."""
        self.last_refresh = time.monotonic()
        self.store.revalidate()  # a folder removed and made again is read anew
        seen: set[str] = set()
        for dirent in self.store.entries(self.folder):
            seen.add(dirent.name)
            self._observe(dirent.name, dirent)
        for name in [n for n in self.entries if n not in seen]:
            self.discard(name)
        for name in [n for n in self.bad if n not in seen]:
            del self.bad[name]
        self._compact()
        return self.expired_bad()

    def refresh_due(self) -> bool:
        """Never scanned, or last scanned more than `refresh_interval` seconds ago."""
        return (self.last_refresh is None
                or time.monotonic() - self.last_refresh >= self.refresh_interval)

    def observe(self, name: str) -> None:
        """Look at one name (a file-system event hint) without rescanning the folder."""
        info = self.store.lstat(self.folder, name)
        if info is None:
            self.discard(name)
            self.bad.pop(name, None)
            return
        self._observe(name, None, info)

    def _observe(self, name: str, dirent: os.DirEntry | None,
                 info: os.stat_result | None = None) -> None:
        if is_move_file(name):
            return  # a move in progress; store.recover_temp_files owns these
        try:
            if dirent is not None:
                inode = dirent.inode()
                regular = dirent.is_file(follow_symlinks=False)  # d_type: no extra call
            else:
                info = info or self.store.lstat(self.folder, name)
                if info is None:
                    return
                inode, regular = info.st_ino, stat.S_ISREG(info.st_mode)
        except OSError:
            return
        known = self.entries.get(name)
        if known is not None and known.inode == inode:
            return
        if known is not None:
            self.discard(name)
        self._parse(name, inode, regular)

    def _parse(self, name: str, inode: int, regular: bool = True) -> None:
        """Index a task file, or remember why an entry is not one.

        Anything that is not a task (a bad name such as a dot-file or a
        `x.json.part`, a link, a FIFO, unparsable content) is quarantined once
        it has not changed for the grace period, so a writer still writing is
        never cut off. Links and FIFOs are never opened.
        """
        if name not in self.bad and regular and name.endswith(".json") and not name.startswith("."):
            # The usual case, a good file seen for the first time: read it
            # straight away (the reader refuses links and non-regular files
            # itself); the lstat below is only needed to remember a bad one.
            try:
                self.add(name, inode, self.store.load_entry(self.folder, name))
                return
            except FileNotFoundError:
                return
            except (BadFile, DropSiteError):
                pass
        info = self.store.lstat(self.folder, name)
        if info is None:
            return
        bad = self.bad.get(name)
        if bad is not None and bad.inode == inode and bad.mtime == info.st_mtime:
            return
        reason = None
        task = None
        if not stat.S_ISREG(info.st_mode):
            reason = "symbolic link (never followed)" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        else:
            try:
                task = self.store.load_entry(self.folder, name)
            except FileNotFoundError:
                return
            except (BadFile, DropSiteError) as exc:
                reason = getattr(exc, "reason", str(exc))
        if reason is not None:
            self.bad[name] = Bad(name, inode, info.st_mtime, reason)
            return
        self.bad.pop(name, None)
        self.add(name, inode, task)

    def add(self, name: str, inode: int, task: Task) -> None:
        self.discard(name)
        self._serial += 1
        entry = Entry(name, inode, task.id, (task.priority, task.created_at, task.id),
                      task.assigned_to, frozenset(task.tags), task.not_before,
                      tuple(task.depends_on), self._serial)
        self.entries[name] = entry
        self.version += 1
        if entry.not_before is not None:
            heapq.heappush(self._ready_heap, (entry.not_before, entry.serial, name))
        item = (entry.key, entry.serial, name)
        pos = bisect.bisect_right(self._order, item, lo=self._start)
        if pos == self._start and self._start > 0:
            self._start -= 1  # reuse the dead slot just before the live part
            self._order[self._start] = item
            self._dead_in_order -= 1
        else:
            self._order.insert(pos, item)

    def discard(self, name: str) -> None:
        """Forget one entry. Its order item stays (dead) until the next compaction,
        so a walk of `ordered()` in progress is never disturbed."""
        if self.entries.pop(name, None) is not None:
            self._dead_in_order += 1

    def _compact(self) -> None:
        if self._dead_in_order > 1024 and self._dead_in_order > len(self._order) // 2:
            self._order = [item for item in self._order[self._start:] if self._live(item)]
            self._start = 0
            self._dead_in_order = 0
            self.version += 1

    def _live(self, item: tuple[tuple, int, str]) -> bool:
        entry = self.entries.get(item[2])
        return entry is not None and entry.serial == item[1]

    def expired_bad(self) -> list[Bad]:
        now = self.clock()
        return [b for b in self.bad.values() if now - b.mtime >= self.grace]

    # -- choosing -----------------------------------------------------------
    def ordered(self) -> Iterator[Entry]:
        """Live entries in queue order: priority (1 first), then creation time.

        Lazy and copy-free: claiming the head of a 20,000-task queue must not
        cost a pass over the whole queue. Entries may be discarded while this
        is walked; adding entries during a walk is not supported.
        """
        order, entries = self._order, self.entries
        i = self._start
        while i < len(order) and not self._live(order[i]):
            i += 1
        self._start = i
        while i < len(order):
            _key, serial, name = order[i]
            i += 1
            entry = entries.get(name)
            if entry is not None and entry.serial == serial:
                yield entry

    def candidates(self, agent: str | None, tags: frozenset | None,
                   now: float | None = None, by_name: bool = False,
                   exclude: frozenset | None = None) -> Iterator[Entry]:
        """Entries this agent may take now, best first."""
        now = self.clock() if now is None else now
        for entry in self.ordered():
            if entry.not_before is not None and entry.not_before > now:
                continue
            if routable(entry.assigned_to, entry.tags, agent, tags, by_name, exclude):
                yield entry

    def next_ready_time(self, now: float | None = None) -> float | None:
        """The earliest not-before time still ahead, for sleeping precisely.

        A heap, not a pass over the index: the daemon asks on every loop turn,
        and a 100,000-task inbox made each turn cost a full scan. Times already
        past are dropped (those tasks are due; nothing to wake up for).
        """
        now = self.clock() if now is None else now
        heap = self._ready_heap
        while heap:
            not_before, serial, name = heap[0]
            entry = self.entries.get(name)
            if entry is not None and entry.serial == serial and not_before > now:
                return not_before
            heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        return len(self.entries)
