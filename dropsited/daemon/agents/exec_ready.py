"""An exec agent's `ready_check:`: the agent as a whole stays STARTING (and takes no
task) until its check exits 0, polled every `interval` until `start_timeout`. Not ready
by then counts as a failed start of the agent, as a command that cannot start does:
BACKOFF, then another round of checks, FATAL after `give_up.failures` in a row.

The check has no agent process to look at (exec agents run one per task), so
`DROPSITE_AGENT_PID` is empty; it typically checks what the agent needs (a model
server, a database). The rules are readiness.py's.
"""

from __future__ import annotations

from ..supervision.readiness import StartVerdict, probe_due, start_verdict

GATE_INDEX = -1  # the ProbeDone index of an agent-wide check (no instance)


class ExecReadyGate:
    """One round of ready checks, opened at `since` (clock seconds)."""

    def __init__(self, group, since: float) -> None:
        self.group = group
        self.since = since
        self.running = False
        self.last: float | None = None
        self.ok = False
        self.detail = ""

    def tick(self, now: float) -> StartVerdict:
        """Launch a check when one is due; the verdict on the round so far."""
        spec = self.group.spec
        verdict = start_verdict(True, self.ok, now - self.since, 0.0, spec.start_timeout)
        probe = spec.ready_check
        if verdict is StartVerdict.WAIT and probe_due(
                self.running, self.last, self.since - probe.interval, probe.interval, now):
            self.running, self.last = True, now
            self.group.launch_probe(self.group.ctx, "ready", probe, spec.cwd, self.group.env,
                                    spec.name, GATE_INDEX, 0)
        return verdict

    def result(self, ok: bool, detail: str) -> None:
        self.running = False
        self.ok = self.ok or ok
        self.detail = detail or self.detail
