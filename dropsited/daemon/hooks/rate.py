"""A token bucket per hook: `calls` runs per `per` seconds, with bursts up to `calls`.

Pure arithmetic on a clock that is passed in, so the unit tests drive it with a fake
clock; the daemon passes time.monotonic.
"""

from __future__ import annotations

from ..manifest.spec import RateLimit


class TokenBucket:
    """Starts full; refills at calls/per tokens a second; each run takes one."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.calls)
        self.at = now

    def take(self, now: float) -> bool:
        """True (and one token used) if a run may start now; False: over the rate."""
        elapsed = max(0.0, now - self.at)  # a clock that steps back refills nothing
        self.at = max(self.at, now)
        rate = self.limit.calls / self.limit.per
        self.tokens = min(float(self.limit.calls), self.tokens + elapsed * rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
