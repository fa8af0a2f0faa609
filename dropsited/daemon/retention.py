"""`retention:` from the daemon: the archive policy in a thread, off the dispatch path.

Every `interval` seconds the thread runs protocol/retention.archive with the manifest's
ages, at most `rate` files a second (it sleeps between moves), so the loop's claims
and moves keep the disk. It uses its own TaskStore (its own descriptors); the moves
are store_archive.py's, safe alongside the loop's own moves of other tasks.
"""

from __future__ import annotations

import logging
import threading

from ..protocol import retention
from ..protocol.store import TaskStore
from .manifest.spec import RetentionSpec

log = logging.getLogger("dropsited")


class RetentionThread:
    """Archives old finished tasks now and then; `update` takes a reloaded policy."""

    def __init__(self, store: TaskStore, spec: RetentionSpec | None) -> None:
        self.store = TaskStore(store.root, durable=store.durable, shared=store.shared)
        self.spec = spec
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.passes = 0  # completed passes (tests wait on it)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.thread.start()

    def update(self, spec: RetentionSpec | None) -> None:
        self.spec = spec
        self.wake.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(5.0)
        self.store.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            spec = self.spec
            if spec is not None:
                self._pass(spec)
            self.wake.wait(spec.interval if spec is not None else 3600.0)
            self.wake.clear()

    def _pass(self, spec: RetentionSpec) -> None:
        ages = {f: a for f, a in (("done", spec.done), ("failed", spec.failed)) if a is not None}
        gap = 1.0 / spec.rate

        def pause(_: int) -> bool:
            return not self.stop_event.wait(gap)

        try:
            report = retention.archive(self.store, ages, compress=spec.compress, pause=pause)
        except Exception as exc:  # a failing disk must not end the thread
            log.error("retention: the archive pass failed: %s", exc)
            return
        finally:
            self.passes += 1
        if report.moved:
            log.info("retention: %d tasks moved to archive/", len(report.moved))
        for note in report.notes[:20]:
            log.warning("retention: %s", note)
