"""One long-lived agent process (worker or service mode) and its state machine.

Only the daemon's main thread calls into this class. Decisions about restarts
are made by the pure functions in restart_policy.py; this class records
states (through one `change_state`) and spawns or stops the process.
"""

from __future__ import annotations

import random
import subprocess
import threading
from collections import deque
from collections.abc import Callable

from ..agents.agent_log import RotatingLog
from ..context import Context, log
from ..manifest import AgentSpec
from .exits import exit_text
from .probes import launch_probe
from .readiness import HealthRecord, StartVerdict, probe_due, start_verdict
from .restart_policy import FailureWindow, decide_after_exit
from .spawner import Child
from .states import AgentState, check_transition

S = AgentState


class Supervised:
    """A process the daemon keeps running according to its agent's restart policy."""

    def __init__(self, spec: AgentSpec, ctx: Context, env: dict, log_file: RotatingLog,
                 index: int, stdin_pipe: bool) -> None:
        self.spec = spec
        self.ctx = ctx
        self.env = env
        self.log_file = log_file
        self.index = index
        self.stdin_pipe = stdin_pipe
        self.state = S.STOPPED
        self.child: Child | None = None
        self.window = FailureWindow(spec.give_up.window)
        self.next_start = 0.0
        self.restarts = 0
        self.last_error = ""
        self.stop_requested = False
        self.restart_requested = False  # the stop is a restart (a worker past its timeout)
        self.memory_hit = False
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.on_spawn: Callable[[Child], None] | None = None
        self.on_exit: Callable[[Child], None] | None = None
        # readiness and health (readiness.py decides; ProbeDone and Ready events report)
        self.launch_probe = launch_probe  # a test hands in its own
        self._reset_probes()

    def _reset_probes(self) -> None:
        self.ready_line = False  # this process printed {"ready": true}
        self.ready_ok = False  # its ready check passed
        self.probe_running = False
        self.probe_last: float | None = None
        self.probe_since = 0.0
        self.health = HealthRecord()
        self.unhealthy = False  # we stop it for its own fault: counted as a failure

    @property
    def name(self) -> str:
        return f"{self.spec.name}[{self.index}]"

    def change_state(self, new: AgentState, why: str = "") -> None:
        check_transition(self.state, new)
        log.info("%s: %s -> %s%s", self.name, self.state.name, new.name, f" ({why})" if why else "")
        self.state = new

    # -- starting -----------------------------------------------------------
    def start(self) -> None:
        self.change_state(S.STARTING)
        self.stop_requested = self.restart_requested = self.memory_hit = False
        self._reset_probes()
        self.probe_since = self.ctx.clock() - (self.spec.ready_check.interval
                                               if self.spec.ready_check else 0.0)
        try:
            self.child = self.ctx.spawn(
                self.spec.argv(), cwd=self.spec.cwd, env=self.env,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, clock=self.ctx.clock)
        except OSError as exc:
            self.child = None
            self.last_error = f"cannot start {self.spec.argv()[0]!r}: {exc.strerror or exc}"
            self._after_exit(None, None, 0.0)
            return
        self.ctx.track(self.child.pid)
        threading.Thread(target=self._pump_stderr, args=(self.child,), daemon=True,
                         name=f"{self.name}-stderr").start()
        if self.on_spawn is not None:
            self.on_spawn(self.child)

    def _pump_stderr(self, child: Child) -> None:
        stream = child.stderr
        for raw in iter(stream.readline, b""):
            self.log_file.write(raw)
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    # -- advancing ------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Advance the state machine; called by the main loop on every wake-up."""
        if self.state in (S.STARTING, S.RUNNING) and self.child is not None:
            if self.child.poll() is not None:
                self._exited()
            elif self.memory_hit or self.unhealthy:
                if self.child.stop_done():  # SIGKILL once the stop grace is over
                    self._exited()
            elif self.state == S.STARTING:
                self._advance_start(now)
            else:
                self._maybe_probe("health", self.spec.health_check, now)
        elif self.state == S.BACKOFF and now >= self.next_start and not self.ctx.draining:
            self.restarts += 1
            self.start()
        elif self.state == S.STOPPING and self.child and self.child.stop_done():
            self._exited()

    # -- readiness and health ---------------------------------------------------
    def _advance_start(self, now: float) -> None:
        """STARTING -> RUNNING by the start_seconds rule, or once ready (readiness.py)."""
        spec = self.spec
        ready = ((spec.ready is None or self.ready_line)
                 and (spec.ready_check is None or self.ready_ok))
        verdict = start_verdict(spec.readiness, ready, self.child.ran_for(),
                                spec.start_seconds, spec.start_timeout)
        if verdict is StartVerdict.UP:
            self.change_state(S.RUNNING, "ready" if spec.readiness else "")
            self.probe_last, self.probe_since = None, now
        elif verdict is StartVerdict.TIMED_OUT:
            self._stop_unhealthy(f"not ready within start_timeout ({spec.start_timeout:g}s)")
        elif not self.ready_ok:
            self._maybe_probe("ready", spec.ready_check, now)

    def _maybe_probe(self, kind: str, probe, now: float) -> None:
        if probe is None or not probe_due(self.probe_running, self.probe_last,
                                          self.probe_since, probe.interval, now):
            return
        self.probe_running, self.probe_last = True, now
        self.launch_probe(self.ctx, kind, probe, self.spec.cwd, self.env, self.spec.name,
                          self.index, self.child.pid)

    def on_ready_line(self, pid: int) -> None:
        """The Ready event: the worker said it is up (ignored from a replaced process)."""
        if self.child is not None and self.child.pid == pid and self.state is S.STARTING:
            self.ready_line = True

    def on_probe(self, kind: str, pid: int, ok: bool, detail: str) -> None:
        """A ProbeDone event for this process: a ready check passed, or a health check
        counted; `health_check.failures` failures in a row restart it."""
        if self.child is None or self.child.pid != pid:
            return
        self.probe_running = False
        if kind == "ready":
            self.ready_ok = self.ready_ok or ok
            if not ok:
                self.last_error = f"ready check: {detail}"
            return
        if self.state is not S.RUNNING or self.unhealthy or self.memory_hit:
            return
        self.health = self.health.record(ok)
        if ok:
            return
        limit = self.spec.health_check.failures
        log.warning("%s: health check failed (%d of %d in a row): %s", self.name,
                    self.health.in_a_row, limit, detail)
        if self.health.exhausted(limit):
            self._stop_unhealthy(f"health check failed {self.health.in_a_row} times in a "
                                 f"row: {detail}")

    def _stop_unhealthy(self, why: str) -> None:
        """Stop it for its own fault (not ready in time, failing its health check); its
        exit then counts as a failure by the restart policy."""
        self.unhealthy = True
        self.last_error = why
        log.warning("%s: %s: restarting", self.name, why)
        self.child.begin_stop(self.spec.stop_signal, self.spec.stop_grace)

    def _exited(self) -> None:
        child = self.child
        assert child is not None
        child.kill_tree(timeout=2.0)  # no grandchild outlives its agent
        self.ctx.untrack(child.pid)
        code, sig = child.exit_status()
        if self.on_exit is not None:
            self.on_exit(child)
        if self.memory_hit or self.unhealthy:
            pass  # the stop signal was ours; over_memory or _stop_unhealthy recorded why
        elif code not in (0, None) or sig is not None:
            tail = self.stderr_tail[-1] if self.stderr_tail else ""
            self.last_error = exit_text(child.returncode, tail)
        self._after_exit(code, sig, child.ran_for())

    def _after_exit(self, code: int | None, sig: int | None, ran_for: float) -> None:
        """Every exit goes through the restart policy; this method only carries it out."""
        now = self.ctx.clock()
        decision = decide_after_exit(
            code if self.child is not None else 1, sig, ran_for, self.spec.restart,
            self.spec.start_seconds, self.stop_requested, self.window.count(now),
            self.spec.give_up.failures, memory_limit_hit=self.memory_hit,
            restart_requested=self.restart_requested and not self.ctx.draining,
            unhealthy=self.unhealthy,
            backoff=self.spec.backoff, rand=random.random())
        if decision.failed:
            self.window = self.window.record(now)
        self.change_state(decision.state, decision.reason)
        if decision.state == S.FATAL:
            log.error("%s: FATAL: %s; last error: %s", self.name, decision.reason, self.last_error)
        self._tell_hooks(decision.state, decision.reason, decision.delay, decision.restart)
        self.next_start = now + decision.delay
        if decision.state is S.STOPPED and decision.restart:
            self.start()

    def _tell_hooks(self, state: AgentState, reason: str, delay: float, restart: bool) -> None:
        """FATAL, or a restart coming (after a backoff, or at once): an agent event."""
        if state == S.FATAL:
            kind = "fatal"
        elif state == S.BACKOFF or (state is S.STOPPED and restart):
            kind = "memory_restart" if self.memory_hit else "restart"
        else:
            return
        self.ctx.agent_event(kind, self.spec.name, instance=self.index, reason=reason,
                             last_error=self.last_error, restarts=self.restarts,
                             delay=round(delay, 3))

    # -- stopping -------------------------------------------------------------
    def begin_stop(self, restart: bool = False) -> None:
        """Stop signal to the process group now; SIGKILL after stop_grace (in tick)."""
        if self.state in (S.STARTING, S.RUNNING) and self.child is not None:
            self.stop_requested = True
            self.restart_requested = restart
            self.change_state(S.STOPPING)
            self.child.begin_stop(self.spec.stop_signal, self.spec.stop_grace)
        elif self.state == S.BACKOFF:
            self.change_state(S.STOPPED, "stop requested during backoff")

    def stop_on_request(self) -> None:
        """`dropsited stop`/`restart`: as begin_stop, and an EXITED or FATAL process is
        acknowledged as STOPPED, so that it stays down until started."""
        if self.state in (S.EXITED, S.FATAL):
            self.change_state(S.STOPPED, "stop requested")
        elif self.state is S.STOPPING:
            self.restart_requested = False  # a restart on its way becomes a stop
        else:
            self.begin_stop()

    def start_on_request(self) -> None:
        """`dropsited start`/`restart`: start a process that rests (STOPPED, EXITED, FATAL)
        with a fresh failure window, as supervisorctl's start after a fix."""
        if self.state in (S.STOPPED, S.EXITED, S.FATAL):
            self.window = FailureWindow(self.spec.give_up.window)
            self.start()

    def over_memory(self) -> None:
        """Restart for exceeding max_memory: counted as a failure (pm2 #839), so a leak
        that refills at once ends in FATAL instead of an endless restart loop."""
        if (self.state in (S.STARTING, S.RUNNING) and self.child is not None
                and not self.memory_hit and not self.unhealthy):
            self.memory_hit = True
            self.last_error = f"over max_memory ({self.spec.max_memory} bytes): restarted"
            self.child.begin_stop(self.spec.stop_signal, self.spec.stop_grace)

    def kill_now(self) -> None:
        if self.child is not None and self.alive:
            self.child.kill_tree(timeout=2.0)

    @property
    def alive(self) -> bool:
        return self.state in (S.STARTING, S.RUNNING, S.STOPPING)

    def rss(self) -> int:
        return self.child.rss_tree() if self.child is not None and self.alive else 0

    def describe(self, now: float) -> dict:
        running = self.child is not None and self.alive
        return {"index": self.index, "state": self.state.name,
                "pid": self.child.pid if running else None,
                "uptime": round(self.child.ran_for(), 1) if running else 0,
                "restarts": self.restarts, "last_error": self.last_error}
