"""Running a ready or health check command beside an agent, off the main loop.

Each run is a short thread: it spawns the probe through the same spawner as agents
(own process group, tracked by containment so it dies with the daemon), waits at most
the probe's `timeout`, kills what is left, and posts a `ProbeDone` event; the loop
decides what the result means (readiness.py). The probe's environment is the agent's,
plus `DROPSITE_AGENT_PID`: the pid of the process it checks (empty for an exec agent).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time

from ..context import Context, log
from ..events import ProbeDone
from ..manifest.spec import Probe
from .exits import exit_text

STDERR_KEPT = 4096  # the end of a probe's stderr kept for the reason of a failure


def launch_probe(ctx: Context, kind: str, probe: Probe, cwd: os.PathLike | str,
                 env: dict, agent: str, index: int, pid: int) -> None:
    """Run `probe` in a thread; its result comes back as a ProbeDone event."""
    threading.Thread(target=_run_and_post, daemon=True, name=f"{agent}[{index}]-{kind}",
                     args=(ctx, kind, probe, cwd, env, agent, index, pid)).start()


def _run_and_post(ctx: Context, kind: str, probe: Probe, cwd, env: dict, agent: str,
                  index: int, pid: int) -> None:
    try:
        ok, detail = run_probe(ctx, probe, cwd, {**env, "DROPSITE_AGENT_PID": str(pid or "")})
    except Exception as exc:  # a probe must never take the thread's event with it
        log.exception("%s[%d]: %s check could not run", agent, index, kind)
        ok, detail = False, f"the check could not run: {exc}"
    ctx.post(ProbeDone(agent, index, pid, kind, ok, detail))


def run_probe(ctx: Context, probe: Probe, cwd, env: dict) -> tuple[bool, str]:
    """(exit 0?, why not): 'exit status 1: <last stderr line>', 'timed out after 5s',
    'cannot start ...'."""
    try:
        with ctx.spawn_lock:
            child = ctx.spawn(probe.argv(), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              pdeathsig=not ctx.watch_up())
            ctx.track(child.pid)
    except OSError as exc:
        return False, f"cannot start {probe.argv()[0]!r}: {exc.strerror or exc}"
    try:
        deadline = time.monotonic() + probe.timeout
        err = _read_until(child.stderr, deadline)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        timed_out = child.poll() is None
        child.kill_tree(timeout=2.0)  # nothing a probe started outlives it
    finally:
        ctx.untrack(child.pid)
        with contextlib.suppress(OSError):
            child.stderr.close()
    if timed_out:
        return False, f"timed out after {probe.timeout:g}s"
    if child.returncode == 0:
        return True, ""
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return False, exit_text(child.returncode, lines[-1][:200] if lines else "")


def _read_until(stream, deadline: float) -> bytes:
    """stderr until end of file or `deadline`, keeping the last STDERR_KEPT bytes."""
    kept = b""
    fd = stream.fileno()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        kept = (kept + chunk)[-STDERR_KEPT:]
    return kept
