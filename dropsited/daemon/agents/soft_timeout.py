"""The soft timeout: `timeout_signal` sent `timeout_grace` before a task's timeout, so
an agent can save partial work before the stop signal and SIGKILL of the timeout.

Exec agents and workers time their tasks in the same way (a deadline checked by the
thread that waits for the outcome), so both carry one of these per task. It signals
the agent's whole process group, as every stop does, once per task.
"""

from __future__ import annotations

from ..context import log
from ..manifest import AgentSpec
from ..supervision.exits import signal_name
from ..supervision.spawner import Child


class SoftTimeout:
    """When to send `timeout_signal` for one task started at `started` (clock seconds)."""

    def __init__(self, spec: AgentSpec, started: float, who: str) -> None:
        offset = spec.soft_timeout()
        self.at = None if offset is None else started + offset
        self.signal = spec.timeout_signal
        self.who = who
        self.sent = False

    def bound(self, wait: float, now: float) -> float:
        """`wait` shortened so the waiting thread wakes when the signal is due."""
        if self.at is None or self.sent:
            return wait
        return max(0.0, min(wait, self.at - now))

    def maybe_send(self, child: Child, now: float) -> bool:
        """Send the signal if it is due and was not sent yet; True when sent now."""
        if self.at is None or self.sent or now < self.at or child.poll() is not None:
            return False
        self.sent = True
        log.info("%s: soft timeout: %s to pid %d", self.who, signal_name(self.signal), child.pid)
        child.send_signal_group(self.signal)
        return True
