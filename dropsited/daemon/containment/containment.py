"""One owner for keeping agent processes contained: none outlives its agent or the daemon.

The daemon's loop only says when (start, a SIGCHLD, each turn, shutdown); this object
does the rest: the child-subreaper flag, stopping the agents a SIGKILLed daemon left
behind, the death watch's life (started, replaced when it dies, retried with the restart
policy's backoff when it cannot start), and the sweeps of orphans the daemon adopted.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from ..context import log, log_limited
from ..supervision.restart_policy import Backoff
from ..timers import Timers
from . import subreaper
from .death_watch import DeathWatch
from .process_tree import descendants, is_alive, signal_all, stop_orphans_from_previous_run

ORPHAN_INTERVAL = 1.0  # at most one orphan sweep a second, however many SIGCHLDs come
DEATH_WATCH_INTERVAL = 1.0  # a check besides SIGCHLD
WATCH_BACKOFF = Backoff(initial=2.0, max=60.0, factor=2.0)  # a watch that cannot start


class Containment:
    """Subreaper, death watch and orphan sweeps for one daemon.

    `held_pids()` names every process an agent group holds (they are not orphans);
    `spawn_lock` is held by spawners while they create and register a child, so a
    sweep never mistakes a child being registered for an orphan.
    """

    def __init__(self, workspace: Path, marker: str, clock: Callable[[], float],
                 spawn_lock: threading.Lock, held_pids: Callable[[], set[int]]) -> None:
        self.workspace = workspace
        self.watch = DeathWatch(marker)
        self.clock = clock
        self.spawn_lock = spawn_lock
        self.held_pids = held_pids
        self.timers = Timers(clock)
        self.watch_failures = 0
        self.watch_retry_at = 0.0
        self.orphans_pending = False

    # -- what the loop calls --------------------------------------------------------------
    def start(self) -> None:
        """Before any agent runs: adopt orphans from now on, stop a previous daemon's
        agents (their claims are then requeued by recovery), start the death watch."""
        subreaper.become_subreaper()
        for pid in stop_orphans_from_previous_run(self.workspace):
            log.warning("stopped agent process %d left by a previous daemon", pid)
        self.keep_watch()

    def on_sigchld(self) -> None:
        """A child exited: a killed watch is replaced at once (one waitpid); orphans are
        swept at the next tick, at most once per ORPHAN_INTERVAL."""
        self.keep_watch()
        self.orphans_pending = True

    def tick(self) -> None:
        if self.orphans_pending and self.timers.due("orphans", ORPHAN_INTERVAL):
            self.orphans_pending = False
            self.sweep_orphans()
        if self.timers.due("death_watch", DEATH_WATCH_INTERVAL):
            self.keep_watch()

    def shutdown(self) -> None:
        """Every agent was told to die: the last sweep, then the watch leaves cleanly."""
        self.sweep_orphans()
        self.watch.dismiss()

    # -- what agents' spawners call (through Context) -----------------------------------
    def track(self, pid: int) -> None:
        """An agent was spawned: the death watch kills its group if the daemon dies."""
        self.watch.register(pid)

    def untrack(self, pid: int) -> None:
        """An agent was reaped: its pid may be reused, so the watch must forget it."""
        self.watch.forget(pid)

    def watch_up(self) -> bool:
        """True while the death watch runs: exec agents may skip PDEATHSIG's exec."""
        return self.watch.up

    def watch_pid(self) -> int | None:
        return self.watch.pid if self.watch.up else None

    # -- the mechanisms -------------------------------------------------------------------
    def keep_watch(self) -> None:
        """Start the death watch if it is not up, backing off after failed starts;
        while it is down, exec agents fall back to PDEATHSIG (watch_up())."""
        watch = self.watch
        if watch.running() and watch.up:
            return
        now = self.clock()
        if now < self.watch_retry_at:
            return
        if watch.popen is not None and watch.popen.returncode is not None:
            log.warning("death watch (pid %d) exited with %s; starting a new one",
                        watch.pid, watch.popen.returncode)
        try:
            watch.start()
            self.watch_failures = 0
        except OSError as exc:
            self.watch_failures += 1
            self.watch_retry_at = now + WATCH_BACKOFF.delay(self.watch_failures, random.random())
            log_limited("death_watch", f"cannot start the death watch ({exc}): exec agents "
                        "get PR_SET_PDEATHSIG instead")

    def sweep_orphans(self) -> None:
        """Reap adopted zombies and kill adopted live orphans.

        As a subreaper the daemon inherits whatever an agent left behind when it
        exited (a daemonized grandchild that closed its pipes and left the
        session). The daemon spawns nothing but agents and its watch, so a live child
        that no agent holds is such a leftover: no grandchild outlives its agent.
        """
        with self.spawn_lock:
            known = self.held_pids()
            if self.watch.pid is not None:
                known.add(self.watch.pid)
            subreaper.reap_orphans(known)
            killed = kill_adopted(known)
        for pid in killed:
            log.warning("killed pid %d, left behind by an agent that exited", pid)


def kill_adopted(known: set[int]) -> list[int]:
    """SIGKILL our live children that are not in `known`, and their descendants."""
    try:
        adopted = [p for p in psutil.Process().children() if p.pid not in known and is_alive(p)]
    except psutil.Error:
        return []
    for proc in list(adopted):
        adopted += descendants(proc)
    return signal_all(adopted, signal.SIGKILL)
