"""The daemon's main loop. It only orchestrates: it decides when, others decide what.

One thread (this one) owns all state. Threads that watch files, talk to agents or
pump logs post typed events (events.py) to `ctx.events`; signal handlers do the same.
The loop wakes on an event or a timer, applies events, advances supervision, reaps
dead holders, dispatches tasks (dispatch/) and publishes status (status.py). Process
containment is containment/'s, a reload's plan reload.py's, restarts supervision/'s.
"""

from __future__ import annotations

import enum
import queue
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..protocol import DropSiteError
from ..protocol.control import CONTROL
from ..protocol.hosts import DEFAULT_LEASE
from ..service.defaults import DEFAULT_DRAIN_GRACE
from ..service.sdnotify import Notifier
from . import reload
from .agents.roster import Roster
from .containment.containment import Containment
from .containment.process_tree import DaemonMarker
from .context import Context, log, log_limited
from .control.controller import Controller
from .dispatch import upkeep
from .dispatch.dispatcher import dispatch
from .dispatch.inbox_watch import InboxWatcher
from .events import (
    ControlRequest,
    Finished,
    Hint,
    ProbeDone,
    Ready,
    ReapNow,
    RestartInstance,
    Signal,
    SpawnFailed,
)
from .hooks import Hooks
from .host_lease import HostLease
from .manifest import Manifest
from .metrics_export import MetricsUnavailable
from .operations import Operations
from .status import DaemonLock, StatusPublisher, daemon_identity
from .timers import Timers, jittered
from .workspace_checks import modes, open_workspace, refused, warn_if_open, warn_if_polled

RESCAN_INTERVAL = 5.0
REAP_INTERVAL = 1.0
STATUS_INTERVAL = 10.0
PUBLISH_INTERVAL = 1.0
MEMORY_INTERVAL = 5.0
LOOP_ERROR_PAUSE = 0.5
SHARED_POLL = 2.0  # the rescan interval on a shared file system, where events do not cross
TEMP_SWEEP_INTERVAL = 60.0  # abandoned (or forged) temp files in inbox/
TEMP_SWEEP_ALL_INTERVAL = 3600.0  # ... and in every folder (done/ may be huge)


class DaemonState(enum.Enum):
    """The daemon's own life, as daemon.json and `dropsited status` show it."""

    STARTING = "starting"
    RUNNING = "running"  # claiming and dispatching
    DRAINING = "draining"  # no new claims; running tasks finish, then everything stops
    STOPPED = "stopped"


class Daemon:
    def __init__(self, manifest: Manifest, poll: float | None = None,
                 grace: float = DEFAULT_DRAIN_GRACE, durable: bool = True,
                 notifier: Notifier | None = None, workspace_override: Path | None = None,
                 retry_base: float | None = None, corrupt_grace: float | None = None,
                 lease: float = DEFAULT_LEASE, metrics: str | None = None) -> None:
        self.manifest = manifest
        self.poll = poll
        self.grace = grace
        self.workspace_override = workspace_override
        self.notifier = notifier or Notifier.from_env()
        self.modes_at_start = modes((manifest.workspace, manifest.path))
        self.ds = open_workspace(manifest.workspace, durable, retry_base, corrupt_grace)
        # A file system other hosts may share (docs/HOSTS.md): events do not cross hosts,
        # so it is polled; other hosts' claims are judged by their leases.
        self.shared = self.ds.store.shared
        self.polling_forced = self.shared and poll is None
        if self.polling_forced:
            self.poll = SHARED_POLL
        self.lock = DaemonLock(self.ds.workspace, self.shared)
        self.lease = HostLease(self.ds, lease, active=self.shared,
                               extra=lambda: self.status.host_status if self.status else {})
        self.ctx: Context | None = None
        self.agents: Roster | None = None
        self.containment: Containment | None = None
        self.status: StatusPublisher | None = None
        self.watcher: InboxWatcher | None = None
        self.timers: Timers | None = None
        self.control: Controller | None = None
        self.hooks: Hooks | None = None
        self.drain_deadline = 0.0
        self.stop_now = False
        self.state = DaemonState.STARTING
        self.ops = Operations(self.ds, manifest, self.shared, metrics)  # schedules, metrics...
        # One handler per event type (events.py): the loop never unpacks a tuple.
        self.handlers: dict[type, Callable[[Any], None]] = {
            Hint: self._on_hint, Signal: self._on_signal, ReapNow: lambda _: self._reap(),
            Finished: self._on_finished,
            SpawnFailed: lambda e: self.agents.on_spawn_failed(e),
            RestartInstance: lambda e: self.agents.on_restart_instance(e),
            ControlRequest: lambda e: self.control.pick_up(e.name),
            Ready: lambda e: self.agents.on_ready(e),
            ProbeDone: lambda e: self.agents.on_probe(e),
        }

    # -- life cycle ----------------------------------------------------------------
    def run(self) -> int:
        if refused(self.ds):
            return 1
        try:
            self.lock.acquire()
            self.lease.start()
            if (address := self.ops.serve()) is not None:
                log.info("metrics on %s", address)
        except (DropSiteError, MetricsUnavailable) as exc:
            log.error("%s", exc)
            self.lease.stop()
            self.lock.release()
            return 1
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _start(self) -> None:
        ws = self.ds.workspace
        if self.polling_forced:
            warn_if_polled(self.ds, self.poll)
        warn_if_open(self.ds, self.manifest.path, self.modes_at_start)
        marker = DaemonMarker.for_current_process(ws).format()
        self.ctx = ctx = Context(self.ds, marker)
        self.timers = Timers(ctx.clock)
        self.agents = Roster(ctx)
        self.hooks = ctx.hooks = Hooks(self.manifest, ctx)  # store tells it of quarantines
        self.ds.store.on_quarantine = self.hooks.quarantined
        self.containment = ctx.containment = Containment(
            ws, marker, ctx.clock, ctx.spawn_lock,
            lambda: self.agents.held_pids() | self.hooks.pids())
        self.containment.start()  # before recovery: a previous daemon's agents are stopped
        for line in self.ds.recover():
            log.info("recovery: %s", line)
        self.timers.postpone("temps_all", TEMP_SWEEP_ALL_INTERVAL)  # recover() did one
        self.status = StatusPublisher(self.ds, self.notifier, daemon_identity(self.manifest.path))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, lambda signum, _: ctx.post(Signal(signum)))  # acted on in the loop
        for spec in self.manifest.agents:
            self.agents.add(spec)
        accepting = (DaemonState.STARTING, DaemonState.RUNNING)
        self.control = Controller(ctx, self.agents, lambda: self.state in accepting,
                                  lambda: self._publish(force=True))
        self.control.start()
        if self.poll is None:
            self.watcher = InboxWatcher(ws / "inbox", lambda name: ctx.post(Hint(name)))
            self.watcher.also_watch(self.ds.store.path(CONTROL),
                                    lambda name: ctx.post(ControlRequest(name)))
            self.watcher.start()
        self.ds.sweep_inbox()
        self.state = DaemonState.RUNNING
        self.ops.start(self.agents.current.values(), ctx.clock())
        self._publish(force=True)
        if self.shared:
            self.lease.renew()  # the host record shows the agents from the start
        self.notifier.ready()
        log.info("dropsited ready: %d agents on %s", len(self.agents.current), ws)
        self._dispatch()  # tasks already waiting start now, not after the first wait

    # -- the loop -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                if self._turn():
                    return
            except (DropSiteError, OSError) as exc:
                # The workspace's file system failed (a network mount gone, ENOTCONN,
                # EIO): nothing is lost by waiting; the next turn tries again.
                log_limited("loop", f"the workspace cannot be read or written now: {exc}")
                time.sleep(LOOP_ERROR_PAUSE)

    def _turn(self) -> bool:
        """One turn: events, supervision, timers, claims; True once a drain has stopped all."""
        events = self.ctx.events
        try:
            event = events.get(timeout=self._next_wakeup())
        except queue.Empty:
            event = None
        while event is not None:
            self.handlers[type(event)](event)
            try:
                event = events.get_nowait()
            except queue.Empty:
                event = None
        now = self.ctx.clock()
        self.agents.tick(now)
        self.control.tick(now)
        self._periodic(now)
        if self.state is DaemonState.RUNNING:
            self.ops.tick()  # before dispatch: a scheduled task due now goes out this turn
            if self.lease.healthy():  # else other hosts may soon take our claims
                self._dispatch()
            return False
        return self._drain_step(now)

    def _dispatch(self) -> None:
        dispatch(self.ds, self.agents.current, self.agents.runs, claim_ahead=not self.shared)

    def _next_wakeup(self) -> float:
        busy = self.state is not DaemonState.RUNNING or self.agents.busy()
        wait = 0.1 if busy else REAP_INTERVAL
        if self.poll is not None:  # without events, the rescan timer is the only news
            wait = min(wait, max(0.01, self.timers.left("rescan")))
        ready_at = self.ds.inbox_index().next_ready_time()
        if ready_at is not None:
            wait = min(wait, max(0.01, ready_at - time.time()))
        if (slot := self.ops.wakeup()) is not None:
            wait = min(wait, max(0.01, slot))
        interval = self.notifier.watchdog_interval()
        return min(wait, interval) if interval else wait

    def _periodic(self, now: float) -> None:
        due = self.timers.due
        rescan = self.poll or RESCAN_INTERVAL
        if due("rescan", jittered(rescan) if self.shared else rescan):
            for line in self.ds.sweep_inbox():
                log.warning("quarantined %s", line)
            self.control.scan()  # with --poll, a request waits at most one poll
        if due("reap", REAP_INTERVAL):
            self._reap()
        if due("temps", TEMP_SWEEP_INTERVAL):
            upkeep.sweep_temp_files(self.ds, full=due("temps_all", TEMP_SWEEP_ALL_INTERVAL))
            self.control.sweep(time.time())
        self.containment.tick()
        if due("memory", MEMORY_INTERVAL):
            self.agents.check_memory()
        self.ops.periodic(due, self.agents.current.values(), now)
        if due("publish", PUBLISH_INTERVAL):  # at most once a second, not per task
            self._publish(force=due("status", STATUS_INTERVAL) or self.hooks.changed())
        self.notifier.maybe_ping(now)
        self.agents.tidy()

    # -- events -------------------------------------------------------------------------
    def _on_hint(self, event: Hint) -> None:
        if event.name is None:
            self.ds.sweep_inbox()
        else:
            self.ds.inbox_index().observe(event.name)

    def _on_finished(self, event: Finished) -> None:
        group = self.agents.owner(event.agent, event.task_id)
        task = group.running.get(event.task_id) if group is not None else None
        if group is not None:
            self.ops.task_finished(event, task)
        self.agents.on_finished(event)

    def _on_signal(self, event: Signal) -> None:
        if event.signum == signal.SIGCHLD:
            self.containment.on_sigchld()
        elif event.signum == signal.SIGHUP and self.state is DaemonState.RUNNING:
            self.reload()
        elif event.signum in (signal.SIGTERM, signal.SIGINT):
            if self.state is DaemonState.DRAINING:
                log.warning("second signal: stopping at once, requeueing held tasks")
                self.stop_now = True
            elif self.state is DaemonState.RUNNING:
                self._begin_drain()

    def _reap(self) -> None:
        upkeep.reap(self.ctx, self.agents.running_tasks(), self.lease.view())

    # -- reload ---------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the manifest; restart only what changed; keep it all on error."""
        self.notifier.reloading()
        new = reload.reread(self.manifest, self.workspace_override)
        if new is not None:
            for change, name, spec in reload.plan(self.agents.specs(), new.agents):
                self.agents.change(change, name, spec)
            self.hooks.configure(new)
            self.manifest = new
            self.ops.reload(new)
        self.notifier.ready()
        if new is not None:
            self._publish(force=True)
            log.info("reload done: %d agents", len(self.agents.current))

    # -- draining and stopping --------------------------------------------------------------
    def _begin_drain(self) -> None:
        log.info("draining: no new claims; running tasks have %.0fs to finish", self.grace)
        self.state = DaemonState.DRAINING
        self.ctx.draining = True
        self.notifier.stopping()
        self.drain_deadline = self.ctx.clock() + self.grace
        self.agents.begin_stop()
        self._publish(force=True)

    def _drain_step(self, now: float) -> bool:
        """One loop turn of the drain; True when everything has stopped."""
        if self.stop_now or now >= self.drain_deadline:
            self.agents.kill_now()
        else:
            self.agents.begin_stop()
        return self.agents.stopped()

    def _shutdown(self) -> None:
        if self.agents is None:
            self.lease.stop()
            self.lock.release()
            return
        self.agents.kill_now()
        self.ops.stop_background()
        self.agents.wait_for_runners(self.ctx.events, 5.0, self._on_finished)
        if self.hooks is not None:
            self.hooks.close()  # queued events go out (2 s at most), then its processes die
        if self.containment is not None:
            self.containment.shutdown()
        upkeep.at_shutdown(self.ctx)
        if self.watcher is not None:
            self.watcher.stop()
        self.state = DaemonState.STOPPED
        self._publish(force=True)
        self.ops.stop(self.agents.current.values(), self.ctx.clock())
        self.agents.close()
        self.lease.stop()
        self.lock.release()
        log.info("dropsited stopped")

    def _publish(self, force: bool = False) -> None:
        if self.status is None:  # stopped before it started
            return
        self.status.publish(self.agents.all(), self.ctx.clock(), force)
        if force:
            self.status.publish_daemon(self.state.value, self.agents.current,
                                       self.containment.watch_pid(),
                                       hooks=self.hooks.stats() if self.hooks else None)

