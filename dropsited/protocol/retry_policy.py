"""When a failed task may run again: a pure function, so it is tested without clocks."""

from __future__ import annotations

DEFAULT_BASE = 1.0
DEFAULT_CAP = 300.0


def retry_delay(attempt: int, rand: float, base: float = DEFAULT_BASE,
                cap: float = DEFAULT_CAP) -> float:
    """Seconds to wait before attempt `attempt + 1`, with jitter.

    Exponential in the number of failed attempts so a task that always fails
    stops spinning, and jittered (`rand` in [0, 1) scales it into [50%, 100%])
    so tasks that failed together do not all come back in the same instant.
    """
    if attempt <= 0 or base <= 0:
        return 0.0
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return ceiling * (0.5 + 0.5 * rand)
