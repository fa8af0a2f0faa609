"""When a starting agent counts as up, and when a probe (ready or health check) runs or
gives up: pure decisions over numbers, like restart_policy.py, so the fake clock tests
every rule. The daemon carries them out (supervised.py, agents/exec_agent.py).

Without `ready:` or `ready_check:` an agent is up once it stayed alive `start_seconds`
(supervisor's startsecs). With either, it is up only once every signal it opted in to
came, and not being up by `start_timeout` is a failed start: the daemon stops it and
the restart policy counts it, as it counts an early exit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StartVerdict(enum.Enum):
    """What a STARTING agent's next step is."""

    WAIT = "wait"  # not up yet, time left
    UP = "up"  # STARTING -> RUNNING
    TIMED_OUT = "timed_out"  # a failed start: stop it and count it


def start_verdict(readiness: bool, ready: bool, ran_for: float, start_seconds: float,
                  start_timeout: float) -> StartVerdict:
    """`readiness`: the agent opted in to a ready signal; `ready`: every one it opted in
    to came. Readiness replaces the `start_seconds` rule; it does not add to it."""
    if not readiness:
        return StartVerdict.UP if ran_for >= start_seconds else StartVerdict.WAIT
    if ready:
        return StartVerdict.UP
    return StartVerdict.TIMED_OUT if ran_for >= start_timeout else StartVerdict.WAIT


def probe_due(running: bool, last_started: float | None, since: float, interval: float,
              now: float) -> bool:
    """Whether to start a probe run now: never two at once; the first `interval` after
    `since` (for a ready check `since` is the spawn, so it runs at once: pass
    since = now - interval), then `interval` after the previous run started."""
    if running:
        return False
    base = since if last_started is None else last_started
    return now - base >= interval


@dataclass(frozen=True)
class HealthRecord:
    """Health check results in a row. Immutable, as FailureWindow: `record` returns a
    new value. One success clears the count: `failures` means *consecutive* failures."""

    in_a_row: int = 0

    def record(self, ok: bool) -> HealthRecord:
        return HealthRecord(0 if ok else self.in_a_row + 1)

    def exhausted(self, failures: int) -> bool:
        """True once `failures` (>= 1) runs in a row failed: restart the agent."""
        return self.in_a_row >= max(1, failures)
