"""The states an agent process can be in, and the only edges allowed between them.

This module imports nothing but ``enum`` so that every other module (the daemon loop,
the restart policy, the CLI's status view) can import it without cycles. The daemon
moves an agent between states only after ``check_transition`` accepted the edge, so an
impossible sequence (say RUNNING -> STARTING without an exit) fails loudly instead of
leaving the agent in a state nobody can reason about.
"""

from __future__ import annotations

import enum


class AgentState(enum.Enum):
    """Where one agent is in its life; one explicit value instead of many flags."""

    STOPPED = "stopped"  # not running, and nobody wants it running
    STARTING = "starting"  # spawned, not yet alive for start_seconds
    RUNNING = "running"  # alive for at least start_seconds
    BACKOFF = "backoff"  # exited unexpectedly; waiting out a delay before the restart
    STOPPING = "stopping"  # we signalled it to stop and wait for it to go
    EXITED = "exited"  # ended by itself and the policy says not to restart
    FATAL = "fatal"  # gave up: misconfigured (exit 78) or crashed too often


class InvalidTransition(ValueError):
    """Raised when code tries an edge the table below does not allow."""

    def __init__(self, old: AgentState, new: AgentState) -> None:
        super().__init__(f"invalid agent state transition {old.name} -> {new.name}")
        self.old = old
        self.new = new


_S = AgentState

TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.STOPPED: frozenset({
        _S.STARTING,  # STOPPED -> STARTING: start requested (autostart or `dropsited start`)
    }),
    _S.STARTING: frozenset({
        _S.RUNNING,  # STARTING -> RUNNING: still alive after start_seconds
        _S.BACKOFF,  # STARTING -> BACKOFF: died early (failed start) or spawn failed; retry later
        _S.EXITED,  # STARTING -> EXITED: died early and restart is `never`/clean `on-failure`
        _S.FATAL,  # STARTING -> FATAL: exit 78, or too many failed starts in the window
        _S.STOPPING,  # STARTING -> STOPPING: stop requested before it was up
    }),
    _S.RUNNING: frozenset({
        _S.BACKOFF,  # RUNNING -> BACKOFF: crashed or hit its memory limit; restart after a delay
        _S.EXITED,  # RUNNING -> EXITED: ended and the policy says not to restart
        _S.FATAL,  # RUNNING -> FATAL: exit 78, or too many crashes in the window
        _S.STOPPING,  # RUNNING -> STOPPING: stop requested
    }),
    _S.BACKOFF: frozenset({
        _S.STARTING,  # BACKOFF -> STARTING: the delay is over, spawn again
        _S.STOPPED,  # BACKOFF -> STOPPED: stop requested while nothing runs
    }),
    _S.STOPPING: frozenset({
        _S.STOPPED,  # STOPPING -> STOPPED: it exited (by itself or by our SIGKILL)
    }),
    _S.EXITED: frozenset({
        _S.STARTING,  # EXITED -> STARTING: started again by hand
        _S.STOPPED,  # EXITED -> STOPPED: `dropsited stop` acknowledges it
    }),
    _S.FATAL: frozenset({
        _S.STARTING,  # FATAL -> STARTING: started again by hand after a fix
        _S.STOPPED,  # FATAL -> STOPPED: `dropsited stop` acknowledges it
    }),
}

# States in which a process may exist and must be stopped on shutdown.
PROCESS_STATES: frozenset[AgentState] = frozenset({_S.STARTING, _S.RUNNING, _S.STOPPING})
# States in which the daemon still intends the agent to run (restarts included).
ACTIVE_STATES: frozenset[AgentState] = frozenset({_S.STARTING, _S.RUNNING, _S.BACKOFF})
# States the agent stays in until someone acts.
RESTING_STATES: frozenset[AgentState] = frozenset({_S.STOPPED, _S.EXITED, _S.FATAL})


def is_allowed(old: AgentState, new: AgentState) -> bool:
    """Tell whether ``old -> new`` is an edge of the table, without raising."""
    return new in TRANSITIONS[old]


def check_transition(old: AgentState, new: AgentState) -> AgentState:
    """Return ``new`` if ``old -> new`` is allowed, else raise ``InvalidTransition``.

    Returning ``new`` lets callers write ``self.state = check_transition(self.state, X)``
    so that no assignment can skip the check.
    """
    if not is_allowed(old, new):
        raise InvalidTransition(old, new)
    return new
