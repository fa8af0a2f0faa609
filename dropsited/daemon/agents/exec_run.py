"""One exec task's process from start to end: pumping its pipes, its timeouts, and what its
exit means. Runs on a slot thread (exec_agent.py owns the slots, permits and states)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...protocol import Task
from ..manifest import AgentSpec
from ..supervision.spawner import Child
from .exec_pipes import ExecPipes
from .interrupt import Interrupt
from .outcome import Kind, Outcome, from_exit
from .soft_timeout import SoftTimeout

POLL_SLICE = 0.25  # how often a running task checks for timeout, drain kill and leftovers


@dataclass(frozen=True)
class Exited:
    """A task whose process has ended, with what the outcome needs."""

    task: Task
    returncode: int
    out: bytes
    err: bytes
    timed_out: bool
    killed: bool
    out_total: int = 0  # bytes the agent wrote on stdout, kept or not
    runner_error: str = ""  # the daemon failed to run it: a failed attempt, counted
    interrupt: Interrupt | None = None  # stopped on request (stop, restart, cancel)


@dataclass(frozen=True)
class Watch:
    """What a running task's supervision looks at: the agent's spec and name, the clock,
    and two questions asked every POLL_SLICE (the daemon's kill; a control request)."""

    spec: AgentSpec
    name: str
    clock: Callable[[], float]
    killing: Callable[[], bool]
    interrupted: Callable[[], bool]


def outcome_of(exited: Exited, limit: int, timeout: float | None) -> Outcome:
    """What a finished process means; pure (outcome.py's from_exit, plus the daemon's
    own failures: a runner error, a result over the size limit)."""
    if exited.runner_error:
        return Outcome(Kind.FAIL, error=exited.runner_error, details={"reason": "runner"})
    if exited.out_total > limit and exited.returncode == 0 and not exited.timed_out:
        return Outcome(Kind.FAIL, error=f"result over the size limit: {exited.out_total} bytes "
                       f"on stdout, at most {limit} are kept",
                       details={"reason": "result_too_large", "stdout_bytes": exited.out_total})
    return from_exit(exited.returncode, exited.out, exited.err, exited.timed_out, timeout)


def communicate(child: Child, data: bytes | None, log_file: Any, limit: int,
                watch: Watch) -> tuple[bytes, bytes, bool, bool, int]:
    """(stdout, stderr, timed_out, killed by the daemon's stop, stdout bytes) once the
    process is over."""
    pipes = ExecPipes(child, data, log_file, limit)
    try:
        timed_out, killed = supervise(child, pipes, watch)
    finally:
        pipes.close()
    return bytes(pipes.out), bytes(pipes.err), timed_out, killed, pipes.out_total


def supervise(child: Child, pipes: ExecPipes, watch: Watch) -> tuple[bool, bool]:
    """(timed out, killed by the daemon's stop) once the process and its pipes are done."""
    clock, spec = watch.clock, watch.spec
    deadline = None if spec.timeout is None else clock() + spec.timeout
    soft = SoftTimeout(spec, clock(), watch.name)
    exited_at: float | None = None  # when the agent exited while its pipes stayed open
    while True:
        wait = POLL_SLICE if deadline is None else max(0.0, min(POLL_SLICE, deadline - clock()))
        wait = soft.bound(wait, clock())
        soft.maybe_send(child, clock())
        if pipes.open:
            pipes.pump(wait)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=wait)
        if child.poll() is not None and not pipes.open:
            # kill_now's SIGKILL may end the process before we look at the
            # flag: a death by signal after it was set is the daemon's doing
            return False, watch.killing() and child.returncode < 0
        if watch.killing():
            child.kill_tree(timeout=2.0)
            pipes.drain(2.0)
            return False, True
        if watch.interrupted():  # stop signal to its group, grace, SIGKILL
            child.stop_blocking(spec.stop_signal, spec.stop_grace)
            pipes.drain(2.0)
            return False, False
        if deadline is not None and clock() >= deadline:
            child.stop_blocking(spec.stop_signal, spec.stop_grace)
            pipes.drain(2.0)
            return True, False
        if child.poll() is not None:
            exited_at = exited_at if exited_at is not None else clock()
            if clock() - exited_at >= POLL_SLICE:
                # The agent exited but something still holds its pipes open: a
                # grandchild, maybe one that left the process group (setsid), so
                # a group signal is not enough. kill_tree also finds it by its tag.
                child.kill_tree(timeout=2.0)
                pipes.drain(2.0)
