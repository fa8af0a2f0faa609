"""Delivering events to hooks without ever holding up the daemon.

`emit` (any thread: the loop, slot threads, I/O threads) only matches, takes a token of
the hook's rate limit and appends to the hook's queue, under one lock, in microseconds.
A small pool of threads (POOL) delivers; each hook has at most one delivery in flight,
so a hook that hangs holds one thread until its timeout, and the others keep going.

Bounds, each counted in `stats()` (the daemon's status):
- a hook's queue holds QUEUE_SIZE events; when full the oldest is dropped (`dropped`):
  the newest news is what a person wants;
- over its `rate`, an event is dropped at once (`rate_limited`);
- a run that fails is retried `retries` times with its backoff (jittered, between half
  of it and all of it), then given up
  (`failed`; `timed_out` counts the runs killed at their timeout among them);
- at shutdown, events still queued after the grace are dropped (`dropped`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..context import log
from ..manifest import HookSpec
from .command import Attempt
from .payload import matches
from .rate import TokenBucket

POOL = 4
QUEUE_SIZE = 100


@dataclass
class HookStats:
    """What one hook did since the daemon started (status JSON: `hooks.<name>`)."""

    runs: int = 0  # deliveries finished, successful or not
    ok: int = 0
    failed: int = 0  # given up after its retries
    timed_out: int = 0  # runs killed (or POSTs abandoned) at the timeout
    retries: int = 0  # runs after a failed one
    dropped: int = 0  # queue full (oldest dropped) or still queued at shutdown
    rate_limited: int = 0
    queued: int = 0
    last_error: str = ""


class _Hook:
    def __init__(self, spec: HookSpec, now: float, stats: HookStats | None = None) -> None:
        self.spec = spec
        self.bucket = TokenBucket(spec.rate, now)
        self.queue: deque[dict] = deque()
        self.busy = False
        self.stats = stats or HookStats()


Deliver = Callable[[HookSpec, dict], Attempt]


class HookRunner:
    """The queues, the pool and the counters; `deliver` runs one attempt (injected, so
    the unit tests drive this with fakes and a fake clock)."""

    def __init__(self, specs: tuple[HookSpec, ...], deliver: Deliver,
                 clock: Callable[[], float] = time.monotonic, pool: int = POOL,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.deliver = deliver
        self.clock = clock
        self.pool = pool
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._hooks: dict[str, _Hook] = {}
        self._ready: deque[_Hook] = deque()  # hooks with events and nothing in flight
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._closed = False
        self.version = 0  # bumped whenever a counter changes (the status is republished)
        self.configure(specs)

    def configure(self, specs: tuple[HookSpec, ...]) -> None:
        """Take a (re)loaded manifest's hooks; a hook kept by name keeps its counters."""
        with self._cond:
            now = self.clock()
            old = self._hooks
            self._hooks = {s.name: _Hook(s, now, old[s.name].stats if s.name in old else None)
                           for s in specs}
            for name, hook in self._hooks.items():
                if name in old:
                    hook.queue, hook.busy = old[name].queue, old[name].busy
            self._ready = deque(h for h in self._hooks.values() if h.queue and not h.busy)
            self.version += 1

    def events(self) -> frozenset[str]:
        """The event kinds some hook wants: callers build no payload for the others."""
        return frozenset(e for h in self._hooks.values() for e in h.spec.events)

    # -- any thread ---------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        with self._cond:
            if self._closed:
                return
            now = self.clock()
            for hook in self._hooks.values():
                if matches(hook.spec, event):
                    self._enqueue(hook, event, now)

    def _enqueue(self, hook: _Hook, event: dict, now: float) -> None:
        self.version += 1
        if not hook.bucket.take(now):
            hook.stats.rate_limited += 1
            return
        if len(hook.queue) >= self.queue_size:
            hook.queue.popleft()
            hook.stats.dropped += 1
        hook.queue.append(event)
        hook.stats.queued = len(hook.queue)
        if not hook.busy and hook not in self._ready:
            self._ready.append(hook)
        if len(self._threads) < min(self.pool, len(self._hooks)):
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"hooks-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        self._cond.notify()

    # -- the pool -----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                hook = self._ready.popleft()
                event = hook.queue.popleft()
                hook.stats.queued = len(hook.queue)
                hook.busy = True
            try:
                self._deliver(hook, event)
            except Exception as exc:  # a bug here must not kill the thread
                log.exception("hook %s: delivery failed", hook.spec.name)
                self._count(hook, ok=False, error=f"internal error: {exc}")
            finally:
                with self._cond:
                    hook.busy = False
                    live = self._hooks.get(hook.spec.name) is hook
                    if hook.queue and live and hook not in self._ready:
                        self._ready.append(hook)
                    self._cond.notify_all()

    def _deliver(self, hook: _Hook, event: dict) -> None:
        spec = hook.spec
        for attempt in range(spec.retries + 1):
            if attempt:
                with self._cond:
                    hook.stats.retries += 1
                    self.version += 1
                if self._stop.wait(spec.backoff.delay(attempt, random.random())):
                    with self._cond:  # stopping between two runs: the event is dropped
                        hook.stats.dropped += 1
                    return
            result = self.deliver(spec, event)
            if result.timed_out:
                with self._cond:
                    hook.stats.timed_out += 1
            if result.ok or not result.retryable or attempt == spec.retries:
                break
        self._count(hook, result.ok, result.error)
        if not result.ok:
            log.warning("hook %s: %s event %s: %s (gave up after %d run(s))", spec.name,
                        event["event"], event.get("task_id") or event.get("agent") or "",
                        result.error, attempt + 1)

    def _count(self, hook: _Hook, ok: bool, error: str = "") -> None:
        with self._cond:
            hook.stats.runs += 1
            if ok:
                hook.stats.ok += 1
            else:
                hook.stats.failed += 1
                hook.stats.last_error = error[:300]
            self.version += 1

    # -- status and the end ---------------------------------------------------------------
    def stats(self) -> dict[str, dict]:
        with self._cond:
            return {name: asdict(hook.stats) for name, hook in self._hooks.items()}

    def idle(self) -> bool:
        with self._cond:
            return not any(h.queue or h.busy for h in self._hooks.values())

    def close(self, grace: float) -> None:
        """Let queued events go out for up to `grace` seconds, then stop the pool; what
        is still queued is dropped and counted. Running commands are the caller's to kill."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._closed = True
            while any(h.queue or h.busy for h in self._hooks.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            for hook in self._hooks.values():
                hook.stats.dropped += len(hook.queue)
                hook.queue.clear()
                hook.stats.queued = 0
            self._stop.set()
            self._cond.notify_all()
