"""Named intervals on the daemon's clock: "is it time to do X again?"."""

from __future__ import annotations

import random
from collections.abc import Callable


class Timers:
    """`due(name, interval)` is True at most once per `interval` seconds of `clock`
    (the first time at once); the loop asks on every turn, so nothing here sleeps."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.next: dict[str, float] = {}

    def due(self, name: str, interval: float) -> bool:
        now = self.clock()
        if now >= self.next.get(name, 0.0):
            self.next[name] = now + interval
            return True
        return False

    def left(self, name: str) -> float:
        """Seconds until `name` is due (0 once it is)."""
        return max(0.0, self.next.get(name, 0.0) - self.clock())

    def postpone(self, name: str, seconds: float) -> None:
        """Not due before `seconds` from now (something did the job just now)."""
        self.next[name] = self.clock() + seconds


def jittered(interval: float) -> float:
    """±25 %: daemons of several hosts that started together do not act (and race for the
    same tasks) in step."""
    return interval * random.uniform(0.75, 1.25)
