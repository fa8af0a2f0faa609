"""What to do after an agent process exits: restart, after what delay, or give up.

Pure functions over numbers: no I/O and no clock reads. The daemon passes times from
``time.monotonic()`` and a random float, so every rule is tested with fake numbers and
no sleeps. Two bugs of older supervisors are left behind on purpose:

* supervisor #405: a crash after the process reached RUNNING reset the retry count, so
  a program that crashed a little after ``startsecs`` restarted forever. Here every
  failure (failed start, crash, memory-limit kill) counts in one sliding window.
* pm2 #839: a memory-limit restart reset the unstable-restart counter, so a leaking
  program restarted forever. Here a memory-limit kill counts as a failure too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .exits import EX_CONFIG
from .states import AgentState

RESTART_MODES = ("always", "on-failure", "never")  # the manifest's `restart:` values


@dataclass(frozen=True)
class Backoff:
    """The exponential restart delay, in seconds: `initial * factor**n`, capped at `max`.

    The manifest's `backoff:` is one of these (its keys are the field names); the daemon
    uses others for its own retries (the death watch)."""

    initial: float = 1.0
    max: float = 60.0
    factor: float = 2.0

    def delay(self, failures: int, rand: float) -> float:
        """``backoff_delay`` with these parameters."""
        return backoff_delay(failures, self.initial, self.max, self.factor, rand)


@dataclass(frozen=True)
class Decision:
    """The outcome of one exit.

    ``failed`` tells the caller to record this exit in its ``FailureWindow``; ``delay``
    is how long to stay in BACKOFF before spawning again (0 when not restarting).
    """

    state: AgentState
    restart: bool
    delay: float
    failed: bool
    reason: str


def backoff_delay(
    failures: int, initial: float, maximum: float, factor: float, rand: float
) -> float:
    """Delay before the next start after ``failures`` recent failures.

    ``initial * factor**(failures-1)`` capped at ``maximum``, then "equal jitter": the
    result lies in ``[base/2, base)`` so agents that crashed together (a dependency went
    away) do not all come back in the same instant, yet the delay still grows. No
    failures means no reason to wait: 0.
    """
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError("need initial >= 0, maximum >= 0 and factor >= 1")
    if failures <= 0:
        return 0.0
    try:
        base = initial * math.pow(factor, failures - 1)
    except OverflowError:
        base = maximum
    base = min(base, maximum)
    return base / 2 + base / 2 * rand


@dataclass(frozen=True)
class FailureWindow:
    """Failure timestamps of one agent within the last ``window`` seconds.

    Immutable: ``record`` returns a new window, so the daemon holds one value per
    agent and tests compare values. Successes do not reset it; only age does.
    """

    window: float
    times: tuple[float, ...] = ()

    def prune(self, now: float) -> FailureWindow:
        """Drop failures older than ``window`` seconds before ``now``."""
        kept = tuple(t for t in self.times if now - t < self.window)
        return FailureWindow(self.window, kept)

    def record(self, now: float) -> FailureWindow:
        """Add a failure at ``now`` (failed start, crash after RUNNING, memory kill)."""
        return FailureWindow(self.window, self.prune(now).times + (now,))

    def count(self, now: float) -> int:
        """Number of failures in the window ending at ``now``."""
        return len(self.prune(now).times)

    def exhausted(self, now: float, give_up_failures: int) -> bool:
        """True when ``give_up_failures`` or more failures fell in the window."""
        return 0 < give_up_failures <= self.count(now)


def is_failure(
    exit_code: int | None,
    signal: int | None,
    ran_for: float,
    start_seconds: float,
    memory_limit_hit: bool = False,
) -> bool:
    """Whether an exit we did not ask for counts against the agent.

    A non-zero code, a signal or a memory-limit kill is a failure; so is any exit
    before ``start_seconds``, even with code 0, since a program that spins through
    clean exits under ``restart: always`` would otherwise never be stopped.
    """
    crashed = signal is not None or (exit_code is not None and exit_code != 0)
    return crashed or memory_limit_hit or ran_for < start_seconds


def decide_after_exit(
    exit_code: int | None,
    signal: int | None,
    ran_for: float,
    restart: str,
    start_seconds: float,
    stopping_requested: bool,
    failures_in_window: int,
    give_up_failures: int,
    *,
    memory_limit_hit: bool = False,
    restart_requested: bool = False,
    unhealthy: bool = False,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen, so sharing the default is safe
    rand: float = 0.0,
) -> Decision:
    """Decide the next state after one exit, in this order of precedence.

    1. a stop we requested -> STOPPED (whatever the exit code); with
       ``restart_requested`` (the daemon stopped it to restart it: a worker past its
       task's timeout) a restart at once, not counted against the agent (the task's
       attempt is what failed);
    2. exit code 78 (EX_CONFIG) -> FATAL at once;
    3. ``never`` -> EXITED; ``on-failure`` with a clean exit -> EXITED;
    4. failures in the window, this one included, reach ``give_up_failures`` -> FATAL
       (``give_up_failures <= 0`` never gives up);
    5. otherwise BACKOFF, restarting after ``backoff_delay``.

    ``failures_in_window`` excludes this exit; record it when ``Decision.failed``.
    ``unhealthy``: the daemon stopped it for its own fault (not ready by
    ``start_timeout``, or its health check failed): like a memory-limit kill, a failure
    that restarts by the policy and counts toward FATAL.
    A memory-limit kill is not a requested stop: pass ``stopping_requested=False`` and
    ``memory_limit_hit=True`` so it restarts and counts (pm2 #839).
    """
    if restart not in RESTART_MODES:
        raise ValueError(f"restart must be one of {RESTART_MODES}, got {restart!r}")
    if stopping_requested and restart_requested:
        return Decision(AgentState.STOPPED, True, 0.0, False, "stopped to restart")
    if stopping_requested:
        return Decision(AgentState.STOPPED, False, 0.0, False, "stopped on request")
    failed = is_failure(exit_code, signal, ran_for, start_seconds, memory_limit_hit) or unhealthy
    if exit_code == EX_CONFIG:
        return Decision(AgentState.FATAL, False, 0.0, True, "exit 78: configuration error")
    clean = exit_code == 0 and signal is None and not memory_limit_hit and not unhealthy
    if restart == "never" or (restart == "on-failure" and clean):
        return Decision(AgentState.EXITED, False, 0.0, failed, f"exited; restart={restart}")
    failures = failures_in_window + (1 if failed else 0)
    if 0 < give_up_failures <= failures:
        reason = f"{failures} failures in window (limit {give_up_failures})"
        return Decision(AgentState.FATAL, False, 0.0, failed, reason)
    delay = backoff.delay(failures, rand)
    return Decision(AgentState.BACKOFF, True, delay, failed, f"restart in {delay:.2f}s")
