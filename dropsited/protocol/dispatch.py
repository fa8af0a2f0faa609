"""Choosing the next task for an agent: the inbox index, routing, not-before times and
dependencies. The moves themselves are the store's; this module decides which."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

from .errors import TaskNotFound
from .index import FolderIndex, routable
from .move_names import is_move_file
from .store import BadFile, TaskStore
from .task import Task, parse_iso

ClaimOne = Callable[[str], "Task | None"]


class InboxDispatcher:
    """The inbox index of one DropSite, and the walk that claims from it.

    The index is not thread-safe, and the daemon finishes tasks in runner threads
    while its main thread walks the index: only the thread that made the index
    changes it; others queue names, which the owner observes at its next `index()`.
    """

    def __init__(self, store: TaskStore, grace: float, clock: Callable[[], float]) -> None:
        self.store = store
        self.grace = grace
        self.clock = clock
        self._index: FolderIndex | None = None
        self._owner: int | None = None
        self._pending: deque[str] = deque()
        # claim_next resumes its walk of the index where the previous call of the same
        # (agent, tags) stopped, while the index is unchanged: other agents' tasks at the
        # head of the queue are stepped over once, not on every call (that made draining
        # quadratic in the size of the pile).
        self._walks: dict[tuple, tuple[int, Iterator]] = {}

    def index(self) -> FolderIndex:
        if self._index is None:
            self._index = FolderIndex(self.store, "inbox", self.grace, self.clock)
            self._owner = threading.get_ident()
        if threading.get_ident() == self._owner:
            while self._pending:
                self._index.observe(self._pending.popleft())
        return self._index

    def note(self, task_id: str) -> None:
        """A task this process just put into inbox/: index it now, not at the next rescan."""
        if self._index is None:
            return
        if threading.get_ident() == self._owner:
            self._index.observe(f"{task_id}.json")
        else:
            self._pending.append(f"{task_id}.json")  # deque.append is thread-safe

    def next(self, agent: str, wanted: frozenset | None, by_name: bool,
             exclude: frozenset | None, refresh: bool, claim: ClaimOne,
             unclaim: Callable[[Task], None]) -> Task | None:
        """Claim the best task `agent` may take now, or None.

        `refresh=False` trusts the index as it is (the daemon keeps it current from
        file-system events). Rescanning costs a pass over every name in the folder, so
        it is done when the index has nothing left for us, or once a second (0.1.0's
        AgentLoop likewise saw new tasks only at its next listing).
        """
        index = self.index()
        scanned = False
        if refresh and index.refresh_due():
            self.quarantine_expired(index.refresh())
            scanned = True
        task = self._first(index, agent, wanted, by_name, exclude, claim, unclaim)
        if task is None and refresh and not scanned:
            self.quarantine_expired(index.refresh())
            task = self._first(index, agent, wanted, by_name, exclude, claim, unclaim)
        return task

    def _first(self, index: FolderIndex, agent: str, wanted: frozenset | None, by_name: bool,
               exclude: frozenset | None, claim: ClaimOne,
               unclaim: Callable[[Task], None]) -> Task | None:
        key = (agent, wanted, by_name, exclude)
        walk = self._walks.pop(key, None)
        if walk is None or walk[0] != index.version:
            walk = (index.version, index.candidates(agent, wanted, self.clock(), by_name, exclude))
        for entry in walk[1]:
            if entry.depends_on and not self.dependencies_ready(entry.task_id, entry.depends_on):
                continue
            task = claim(entry.task_id)
            index.discard(entry.name)
            if task is None:
                continue
            if not routable(task.assigned_before_claim, frozenset(task.tags), agent, wanted,
                            by_name, exclude):
                unclaim(task)  # changed since it was indexed
                continue
            if walk[0] == index.version:
                self._walks[key] = walk
            return task
        return None

    def ready(self, task: Task, honour_not_before: bool = True) -> bool:
        """Due (its not-before time passed) and every dependency done: may be handed out."""
        if honour_not_before:
            # The claim's own `active` entry is last now; the time is on the entry before.
            before = next((e for e in reversed(task.history) if e.get("status") != "active"), {})
            not_before = parse_iso(before.get("not_before") or "")
            if not_before is not None and not_before > self.clock():
                return False
        deps = task.depends_on
        return not deps or self.dependencies_ready(task.id, tuple(deps))

    def dependencies_ready(self, task_id: str, deps: tuple) -> bool:
        """All of `deps` in done/; a dependency in failed/ blocks the task for good."""
        failed = [d for d in deps if self.store.exists("failed", f"{d}.json")]
        if failed:
            self._block_for_failed_dependency(task_id, failed[0])
            return False
        return all(self.store.exists("done", f"{d}.json") for d in deps)

    def _block_for_failed_dependency(self, task_id: str, dep: str) -> None:
        name = f"{task_id}.json"
        try:
            task = self.store.load_entry("inbox", name)
        except (FileNotFoundError, BadFile):
            return
        task.log("blocked", reason=f"dependency {dep} failed")
        with contextlib.suppress(TaskNotFound):
            self.store.move(("inbox", name), "blocked", task, held=False)

    def sweep(self) -> list[str]:
        """Quarantine inbox entries that stayed unreadable past the grace period."""
        return self.quarantine_expired(self.index().refresh())

    def quarantine_expired(self, bad: list) -> list[str]:
        moved = []
        for item in bad:
            if is_move_file(item.name):
                continue
            if self.store.quarantine("inbox", item.name, item.reason) is not None:
                moved.append(f"inbox/{item.name}: {item.reason}")
            if self._index is not None:
                self._index.bad.pop(item.name, None)
        return moved
