"""The daemon's main loop. It only orchestrates: every decision lives elsewhere.

One thread (this one) owns all state. Threads that watch files, talk to
agents or pump logs post events to `ctx.events`; signal handlers do the same.
The loop wakes on an event or a timer, applies events, advances supervision,
reaps dead holders, dispatches tasks and publishes status.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import stat
import time
from pathlib import Path

import psutil

from ..protocol import DropSite, DropSiteError
from ..protocol.fsprobe import probe
from ..protocol.hosts import DEFAULT_LEASE
from ..protocol.mounts import mount_of
from ..protocol.store import TASK_FOLDERS
from ..service.defaults import DEFAULT_DRAIN_GRACE
from ..service.sdnotify import Notifier, format_status
from . import subreaper
from .agent_group import AgentGroup
from .context import Context, log, log_limited
from .death_watch import DeathWatch
from .exec_agent import ExecAgent
from .host_lease import HostLease
from .inbox_watch import InboxWatcher
from .manifest import AgentSpec, Manifest, ManifestError, load_manifest
from .process_tree import (
    DaemonMarker,
    descendants,
    is_alive,
    signal_all,
    stop_orphans_from_previous_run,
)
from .service_agent import ServiceAgent
from .settle import retry_parked
from .status import DaemonLock, daemon_identity, write_agent_record, write_daemon_record
from .worker_agent import WorkerAgent

RESCAN_INTERVAL = 5.0
REAP_INTERVAL = 1.0
STATUS_INTERVAL = 10.0
PUBLISH_INTERVAL = 1.0
MEMORY_INTERVAL = 5.0
ORPHAN_INTERVAL = 1.0
LOOP_ERROR_PAUSE = 0.5
SHARED_POLL = 2.0  # the rescan interval on a shared file system, where events do not cross
TEMP_SWEEP_INTERVAL = 60.0  # abandoned (or forged) temp files in inbox/
TEMP_SWEEP_ALL_INTERVAL = 3600.0  # ... and in every folder (done/ may be huge)
DEATH_WATCH_INTERVAL = 1.0  # a check besides SIGCHLD; failed starts back off (2 s .. 60 s)
GROUPS = {"exec": ExecAgent, "worker": WorkerAgent, "service": ServiceAgent}


class Daemon:
    def __init__(self, manifest: Manifest, poll: float | None = None,
                 grace: float = DEFAULT_DRAIN_GRACE, durable: bool = True,
                 notifier: Notifier | None = None, workspace_override: Path | None = None,
                 retry_base: float | None = None, corrupt_grace: float | None = None,
                 lease: float = DEFAULT_LEASE) -> None:
        self.manifest = manifest
        self.poll = poll
        self.grace = grace
        self.workspace_override = workspace_override
        self.notifier = notifier or Notifier.from_env()
        # Read before DropSite() tightens the workspace root, so _warn_permissions still
        # tells the operator it was open.
        self.modes_at_start = {p: _mode(p) for p in (manifest.workspace, manifest.path)}
        options = {} if retry_base is None else {"retry_base": retry_base}
        if corrupt_grace is not None:
            options["corrupt_grace"] = corrupt_grace
        # A workspace that is a link is resolved once, here: what the daemon serves
        # cannot change under it.
        self.ds = DropSite(os.path.realpath(manifest.workspace), durable=durable, **options)
        # A file system other hosts may share (docs/HOSTS.md): events do not cross hosts,
        # so it is polled; other hosts' claims are judged by their leases.
        self.shared = self.ds.store.shared
        self.polling_forced = self.shared and poll is None
        if self.polling_forced:
            self.poll = SHARED_POLL
        self.lock = DaemonLock(self.ds.workspace, self.shared)
        self.lease = HostLease(self.ds, lease, extra=lambda: self.host_status, active=self.shared)
        self.host_status: dict = {}
        self.groups: dict[str, AgentGroup] = {}
        self.retiring: list[AgentGroup] = []
        self.ctx: Context | None = None
        self.death_watch: DeathWatch | None = None
        self.watch_failures = 0
        self.watch_retry_at = 0.0
        self.watcher: InboxWatcher | None = None
        self.identity: dict = {}
        self.registered: dict[str, str] = {}
        self.published: dict[str, dict] = {}
        self.timers: dict[str, float] = {}
        self.drain_deadline: float | None = None
        self.stop_now = False
        self.orphans_pending = False
        self.state = "starting"

    # -- life cycle ----------------------------------------------------------------
    def run(self) -> int:
        problems = workspace_problems(self.ds) or probe_file_system(self.ds.store)
        for problem in problems:
            log.error("%s", problem)
        if problems:
            return 1
        try:
            self.lock.acquire()
            self.lease.start()
        except DropSiteError as exc:
            log.error("%s", exc)
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
            log.warning("%s is on a file system other hosts may share (%s): file-system "
                        "events do not cross hosts, so inbox/ is polled every %gs "
                        "(--poll SECONDS to change)", ws, mount_of(ws).describe(), self.poll)
        self._warn_permissions()
        subreaper.become_subreaper()
        for pid in stop_orphans_from_previous_run(ws):
            log.warning("stopped agent process %d left by a previous daemon", pid)
        for line in self.ds.recover():
            log.info("recovery: %s", line)
        marker = DaemonMarker.for_current_process(ws).format()
        self.ctx = Context(self.ds, marker, ws / "agents" / "logs")
        self.death_watch = self.ctx.watch = DeathWatch(marker)
        self._keep_death_watch()
        self.identity = daemon_identity(self.manifest.path)
        self.timers["temps_all"] = self.ctx.clock() + TEMP_SWEEP_ALL_INTERVAL  # recover() did one
        self._install_signals()
        for spec in self.manifest.agents:
            self._add_group(spec)
        if self.poll is None:
            self.watcher = InboxWatcher(ws / "inbox", lambda name: self.ctx.post("hint", name))
            self.watcher.start()
        self.ds.sweep_inbox()
        self.state = "running"
        self._publish(force=True)
        if self.shared:
            self.lease.renew()  # the host record shows the agents from the start
        self.notifier.ready()
        log.info("dropsited ready: %d agents on %s", len(self.groups), ws)
        self._dispatch()  # tasks already waiting start now, not after the first wait

    def _warn_permissions(self) -> None:
        ws = self.ds.workspace
        paths = [ws, self.manifest.path, *(ws / name for name in self.ds.DIRS)]
        for path in paths:
            mode = self.modes_at_start.get(path) or _mode(path)
            if mode is not None and mode & (stat.S_IWGRP | stat.S_IWOTH):
                log.warning("%s is writable by %s: anyone who can write it can run commands "
                            "as this daemon's user", path,
                            "everyone" if mode & stat.S_IWOTH else "its group")

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.ctx.post("signal", signum)  # act in the loop, never in the handler

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
        """One turn of the loop; True when a drain has stopped everything."""
        ctx = self.ctx
        try:
            event = ctx.events.get(timeout=self._next_wakeup())
        except queue.Empty:
            event = None
        while event is not None:
            self._apply(event)
            try:
                event = ctx.events.get_nowait()
            except queue.Empty:
                event = None
        now = ctx.clock()
        for group in self._all_groups():
            group.tick(now)
        self._periodic(now)
        if self.state == "running":
            if self.lease.healthy():
                self._dispatch()
            return False
        return self._drain_step(now)

    def _next_wakeup(self) -> float:
        busy = self.state != "running" or any(
            i["state"] in ("STARTING", "STOPPING", "BACKOFF")
            for g in self._all_groups() for i in g.instances(0))
        wait = 0.1 if busy else REAP_INTERVAL
        if self.poll is not None:  # without events, the rescan timer is the only news
            wait = min(wait, max(0.01, self.timers.get("rescan", 0.0) - self.ctx.clock()))
        ready_at = self.ds.inbox_index().next_ready_time()
        if ready_at is not None:
            wait = min(wait, max(0.01, ready_at - time.time()))
        interval = self.notifier.watchdog_interval()
        return min(wait, interval) if interval else wait

    def _apply(self, event: tuple) -> None:
        kind = event[0]
        if kind == "hint":
            if event[1] is None:
                self.ds.sweep_inbox()
            else:
                self.ds.inbox_index().observe(event[1])
        elif kind == "finished":
            _, agent, task_id, folder, error = event
            group = self._owner(agent, task_id)
            if group is not None:
                group.finished(task_id, folder, error)
        elif kind == "spawn_failed":
            _, agent, task_id, message = event
            group = self._owner(agent, task_id)
            if isinstance(group, ExecAgent):
                group.spawn_failed(task_id, message)
        elif kind == "restart":
            group = self.groups.get(event[1])
            if isinstance(group, WorkerAgent):
                group.restart_instance(event[2])
        elif kind == "reap":
            self._reap()
        elif kind == "signal":
            self._on_signal_event(event[1])

    def _owner(self, agent: str, task_id: str) -> AgentGroup | None:
        for group in self._all_groups():
            if group.name == agent and task_id in group.running:
                return group
        return None

    def _on_signal_event(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._keep_death_watch()  # one waitpid: a killed watch is replaced at once
            self.orphans_pending = True  # handled in _periodic, at most once per interval
        elif signum == signal.SIGHUP and self.state == "running":
            self.reload()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            if self.state == "draining":
                log.warning("second signal: stopping at once, requeueing held tasks")
                self.stop_now = True
            elif self.state == "running":
                self._begin_drain()

    # -- timers -----------------------------------------------------------------------
    def _due(self, name: str, interval: float) -> bool:
        now = self.ctx.clock()
        if now >= self.timers.get(name, 0.0):
            self.timers[name] = now + interval
            return True
        return False

    def _rescan_interval(self) -> float:
        """The poll, or RESCAN_INTERVAL; on a shared file system jittered by ±25 %, so
        hosts that started together do not rescan (and race for the same tasks) in step."""
        interval = self.poll or RESCAN_INTERVAL
        return interval * random.uniform(0.75, 1.25) if self.shared else interval

    def _periodic(self, now: float) -> None:
        if self._due("rescan", self._rescan_interval()):
            for line in self.ds.sweep_inbox():
                log.warning("quarantined %s", line)
        if self._due("reap", REAP_INTERVAL):
            self._reap()
        if self._due("temps", TEMP_SWEEP_INTERVAL):
            self._sweep_temp_files(full=self._due("temps_all", TEMP_SWEEP_ALL_INTERVAL))
        if self.orphans_pending and self._due("orphans", ORPHAN_INTERVAL):
            self.orphans_pending = False
            self._reap_orphans()
        if self._due("death_watch", DEATH_WATCH_INTERVAL):
            self._keep_death_watch()
        if self._due("memory", MEMORY_INTERVAL):
            for group in self._all_groups():
                group.check_memory()
        if self._due("publish", PUBLISH_INTERVAL):  # at most once a second, not per task
            self._publish(force=self._due("status", STATUS_INTERVAL))
        self.notifier.maybe_ping(now)
        self.retiring = [g for g in self.retiring if not self._retired(g)]
        for group in self.groups.values():
            if hasattr(group, "reap_removed"):
                group.reap_removed()

    def _keep_death_watch(self) -> None:
        """Start the death watch if it is not up, backing off after failed starts;
        while it is down, exec agents fall back to PDEATHSIG (ctx.watch_up())."""
        watch = self.death_watch
        if watch is None or (watch.running() and watch.up):
            return
        now = self.ctx.clock()
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
            self.watch_retry_at = now + min(60.0, 2.0 ** self.watch_failures)
            log_limited("death_watch", f"cannot start the death watch ({exc}): exec agents "
                        "get PR_SET_PDEATHSIG instead")

    def _reap(self) -> None:
        try:
            for task_id, reason in self.ds.reap(hosts=self.lease.view()):
                log.info("reaped %s (%s)", task_id, reason)
        except (DropSiteError, OSError) as exc:
            log_limited("reap", f"reaping failed: {exc}")
        # An outcome the file system refused (disk full, a mount gone) is written again
        # until it is stored or its claim turns out lost (late-results). A task this
        # daemon still holds that no agent runs and no outcome waits for goes back,
        # unused (the reaper never takes it: its holder, this daemon, is alive).
        for task_id, folder in retry_parked(self.ctx):
            log.info("recorded the outcome of %s (%s/) once the workspace took writes again",
                     task_id, folder)
        running = {tid for group in self._all_groups() for tid in group.running}
        self._release_own_tasks("its outcome could not be recorded",
                                keep=running | set(self.ctx.parked))

    def _sweep_temp_files(self, full: bool) -> None:
        folders = TASK_FOLDERS if full else ("inbox",)
        try:
            for line in self.ds.store.recover_temp_files(min_age=60.0, folders=folders):
                log.info("recovery: %s", line)
        except (DropSiteError, OSError) as exc:
            log_limited("temps", f"cannot sweep temp files: {exc}")

    def _reap_orphans(self) -> None:
        """Reap adopted zombies and kill adopted live orphans.

        As a subreaper the daemon inherits whatever an agent left behind when it
        exited (a daemonized grandchild that closed its pipes and left the
        session). The daemon spawns nothing but agents, so a live child that no
        agent holds is such a leftover: no grandchild outlives its agent.
        """
        with self.ctx.spawn_lock:
            known = {self.death_watch.pid} if self.death_watch else set()
            for group in self._all_groups():
                known |= group.held_pids()
            subreaper.reap_orphans(known)
            killed = kill_adopted(known)
        for pid in killed:
            log.warning("killed pid %d, left behind by an agent that exited", pid)

    # -- dispatch ---------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Hand tasks to free agents until none can take more; claims are the only I/O.

        Idle processes of every agent are served first, round-robin; only then
        do agents with short tasks claim one ahead per process (prefetch_slots).
        """
        # No claiming ahead on a shared file system: a task held behind a busy process
        # is one another host could run now.
        for prefetch in (False,) if self.shared else (False, True):
            if not self._dispatch_round(prefetch):
                return

    def _dispatch_round(self, prefetch: bool) -> bool:
        """One claim per agent with room, round after round; False on a claim error."""
        progress = True
        declared = self._declared_tags()
        while progress:
            progress = False
            for group in list(self.groups.values()):
                room = group.prefetch_slots() if prefetch else group.free_slots()
                if not group.takes_tasks() or room <= 0:
                    continue
                try:
                    # An agent without tags takes what no other agent's tags claim
                    # (MANIFEST.md), and whatever is assigned to it by name.
                    task = self.ds.claim_next(group.name, group.tags, refresh=False, by_name=True,
                                              exclude_tags=None if group.tags else declared)
                except (DropSiteError, OSError) as exc:
                    log_limited("dispatch", f"cannot claim tasks: {exc}")
                    return False
                if task is not None and self._still_running(task.id):
                    # Its earlier claim was taken over (another host reaped it during a
                    # partition) while its process still runs here: one run at a time.
                    self.ds.unclaim(task)
                elif task is not None:
                    group.assign(task)
                    progress = True
        return True

    def _still_running(self, task_id: str) -> bool:
        return any(task_id in group.running for group in self._all_groups())

    # -- groups -------------------------------------------------------------------------
    def _declared_tags(self) -> frozenset:
        return frozenset(t for g in self.groups.values() for t in (g.spec.tags or ()))

    def _all_groups(self) -> list[AgentGroup]:
        return list(self.groups.values()) + self.retiring

    def _add_group(self, spec: AgentSpec) -> None:
        group = GROUPS[spec.mode](spec, self.ctx)
        self.groups[spec.name] = group
        if hasattr(group, "start"):
            group.start()

    def _retire(self, group: AgentGroup) -> None:
        group.begin_stop()
        self.retiring.append(group)

    def _retired(self, group: AgentGroup) -> bool:
        if not group.stopped():
            group.begin_stop()
            return False
        group.close()
        return True

    def reload(self) -> None:
        """SIGHUP: re-read the manifest; restart only what changed; keep it all on error."""
        self.notifier.reloading()
        try:
            new = load_manifest(self.manifest.path, workspace_override=self.workspace_override)
        except ManifestError as exc:
            log.error("reload refused, keeping the running manifest:\n%s", exc)
            self.notifier.ready()
            return
        if new.workspace != self.manifest.workspace:
            log.error("reload refused: the workspace cannot change while running (%s -> %s)",
                      self.manifest.workspace, new.workspace)
            self.notifier.ready()
            return
        wanted = {spec.name: spec for spec in new.agents}
        for name in [n for n in self.groups if n not in wanted]:
            log.info("reload: removing agent %s", name)
            self._retire(self.groups.pop(name))
        for spec in new.agents:
            self._reload_one(spec)
        self.manifest = new
        self.notifier.ready()
        self._publish(force=True)
        log.info("reload done: %d agents", len(self.groups))

    def _reload_one(self, spec: AgentSpec) -> None:
        group = self.groups.get(spec.name)
        if group is None:
            log.info("reload: adding agent %s", spec.name)
            self._add_group(spec)
        elif group.spec == spec:
            return
        elif group.spec.same_except_concurrency(spec):
            log.info("reload: %s concurrency %d -> %d", spec.name, group.spec.concurrency,
                     spec.concurrency)
            group.spec = spec
            if hasattr(group, "resize"):
                group.resize(spec.concurrency)
        else:
            log.info("reload: restarting agent %s (definition changed)", spec.name)
            self._retire(self.groups.pop(spec.name))
            self._add_group(spec)

    # -- draining ------------------------------------------------------------------------
    def _begin_drain(self) -> None:
        log.info("draining: no new claims; running tasks have %.0fs to finish", self.grace)
        self.state = "draining"
        self.ctx.draining = True
        self.notifier.stopping()
        self.drain_deadline = self.ctx.clock() + self.grace
        for group in self._all_groups():
            group.begin_stop()
        self._publish(force=True)

    def _drain_step(self, now: float) -> bool:
        """One loop turn of the drain; True when everything has stopped."""
        groups = self._all_groups()
        if self.stop_now or now >= self.drain_deadline:
            for group in groups:
                group.kill_now()
        else:
            for group in groups:
                group.begin_stop()
        return all(group.stopped() for group in groups)

    def _shutdown(self) -> None:
        if self.ctx is None:
            self.lock.release()
            return
        for group in self._all_groups():
            group.kill_now()
        self._wait_for_runners(5.0)
        self._reap_orphans()
        retry_parked(self.ctx)  # a last try at outcomes the file system refused
        self._release_own_tasks()
        if self.watcher is not None:
            self.watcher.stop()
        self.state = "stopped"
        self._publish(force=True)
        for group in self._all_groups():
            group.close()
        if self.death_watch is not None:
            self.death_watch.dismiss()
        self.lease.stop()
        self.lock.release()
        log.info("dropsited stopped")

    def _wait_for_runners(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(g.running for g in self._all_groups()):
            try:
                event = self.ctx.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event[0] == "finished":
                self._apply(event)

    def _release_own_tasks(self, reason: str = "daemon stopped",
                           keep: frozenset | set = frozenset()) -> None:
        """Anything this daemon still holds (except `keep`) goes back to the inbox, unused."""
        try:
            for task_id, error in self.ds.release_held_by(os.getpid(), reason, keep):
                if error is None:
                    log.info("requeued %s: %s", task_id, reason)
                else:
                    log_limited("release", f"could not requeue {task_id}: {error}")
        except (DropSiteError, OSError) as exc:  # the workspace unreachable (a network mount)
            log_limited("release", f"could not requeue held tasks: {exc}")

    # -- status ------------------------------------------------------------------------------
    def _publish(self, force: bool = False) -> None:
        now = self.ctx.clock()
        try:
            for group in self._all_groups():
                record = group.describe(now)
                comparable = {k: v for k, v in record.items() if k not in ("uptime", "instances")}
                if force or self.published.get(group.name) != comparable:
                    registered = self.registered.setdefault(group.name, record_time())
                    write_agent_record(self.ds, group.name, record, registered)
                    self.published[group.name] = comparable
            if force:
                self._publish_daemon()
        except (DropSiteError, OSError) as exc:
            # A full disk must not stop the daemon; the records are rewritten once it can.
            log_limited("publish", f"cannot write status records: {exc}")

    def _publish_daemon(self) -> None:
        counts = self.ds.stats()
        running = sum(1 for g in self.groups.values() if g.state(0).name in ("RUNNING", "STARTING"))
        summary = format_status(running, len(self.groups), counts)
        watch = self.death_watch
        record = {**self.identity, "state": self.state, "workspace": str(self.ds.workspace),
                  "agents": sorted(self.groups), "queues": counts, "status": summary,
                  "death_watch_pid": watch.pid if watch and watch.up else None}
        self.host_status = record  # what this host's record shows (renewed by the lease)
        if not self.shared:  # on a shared file system hosts never write one file
            write_daemon_record(self.ds, record)
        self.notifier.status(summary)


def workspace_problems(ds: DropSite) -> list[str]:
    """Why the daemon must not serve this workspace, one line each (PROTOCOL.md §10):
    folders that are links, not directories, owned by another user, or not writable."""
    store = ds.store
    problems = store.layout_problems(owners=(os.geteuid(), 0))
    try:
        if os.statvfs(store.root_fd()).f_flag & os.ST_RDONLY:
            return problems + [f"{ds.workspace}: is on a read-only file system"]
    except OSError:
        pass
    for folder in ds.DIRS:
        try:
            writable = os.access(folder, os.W_OK | os.X_OK, dir_fd=store.root_fd())
        except (OSError, NotImplementedError):
            continue
        if not writable:
            problems.append(f"{ds.workspace / folder}: is not writable by this user "
                            f"(uid {os.geteuid()})")
    return problems


def probe_file_system(store) -> list[str]:
    try:
        return probe(store)
    except (OSError, DropSiteError) as exc:
        return [f"{store.root}: cannot check what the file system does: {exc}"]


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def kill_adopted(known: set[int]) -> list[int]:
    """SIGKILL our live children that are not in `known`, and their descendants."""
    try:
        adopted = [p for p in psutil.Process().children() if p.pid not in known and is_alive(p)]
    except psutil.Error:
        return []
    for proc in list(adopted):
        adopted += descendants(proc)
    return signal_all(adopted, signal.SIGKILL)


def record_time() -> str:
    from ..protocol.task import utcnow_iso
    return utcnow_iso()
