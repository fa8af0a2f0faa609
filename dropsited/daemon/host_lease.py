"""This daemon's host record and lease, renewed off the loop (issue 13, docs/HOSTS.md).

The record (`.dropsited/hosts/<host>.json`) names the host, its boot, the daemon and
what `dropsited status` shows; it is written again every `lease / 5` seconds by a
thread, so a file server that hangs (a partition: GlusterFS blocks calls for its ping
timeout) never blocks the loop. The loop asks two things:

- `healthy()`: the last renewal succeeded less than `lease / 2` ago, by this host's
  monotonic clock. When it is not, the daemon stops claiming and starting tasks, well
  before other hosts see the lease expire (they need `lease` seconds of server time)
  and take its claims.
- `view()`: every host's record with its age in server time, aged by the time since it
  was read, for the reaper to judge other hosts' claims.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..protocol import DropSite, DropSiteError
from ..protocol.hosts import DEFAULT_LEASE, HostRecord, HostView
from .context import log, log_limited


class HostLease:
    """On a local file system (`active=False`) no other host can reach the workspace:
    nothing is written, `healthy()` is always true and `view()` empty."""

    def __init__(self, ds: DropSite, lease: float = DEFAULT_LEASE,
                 extra: Callable[[], dict] = dict,
                 clock: Callable[[], float] = time.monotonic, active: bool = True) -> None:
        self.ds = ds
        self.active = active
        self.lease = lease
        self.extra = extra  # what the record shows besides the lease (status)
        self.clock = clock
        self.renewed_at: float | None = None  # clock() of the last good renewal
        self._view = HostView(())
        self._view_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_healthy = True

    @property
    def interval(self) -> float:
        return self.lease / 5

    def start(self, wait: float | None = None) -> None:
        """Take this host's record (HostConflict when a live daemon has it), then renew
        it from a thread."""
        if not self.active:
            return
        wait = 1.5 * self.interval if wait is None else wait
        self.ds.hosts.register(self.lease, wait=wait, **self._extra())
        self.renewed_at = self.clock()
        self._refresh_view()
        self._thread = threading.Thread(target=self._run, daemon=True, name="host-lease")
        self._thread.start()

    def _extra(self) -> dict:
        try:
            return dict(self.extra())
        except Exception:  # the record must be written whatever the status says
            return {}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.renew()

    def renew(self) -> bool:
        try:
            now = self.ds.hosts.renew(self.ds.hosts.record(self.lease, **self._extra()))
            self._refresh_view(now)
        except (OSError, DropSiteError) as exc:
            log_limited("lease", f"cannot renew this host's lease: {exc}")
            return False
        self.renewed_at = self.clock()
        return True

    def _refresh_view(self, now: float | None = None) -> None:
        view = self.ds.hosts.view(now)
        self._view, self._view_at = view, self.clock()

    def healthy(self) -> bool:
        """The lease is surely still fresh for everyone: claiming and starting may go on."""
        if not self.active:
            return True
        ok = self.renewed_at is not None and self.clock() - self.renewed_at < self.lease / 2
        if ok != self._was_healthy:
            self._was_healthy = ok
            if ok:
                log.warning("lease renewed again: claiming and starting tasks again")
            else:
                log.error("cannot renew this host's lease for %.0fs: no new claims or "
                          "tasks until it is renewed (other hosts take its claims after %.0fs)",
                          self.lease / 2, self.lease)
        return ok

    def view(self) -> HostView:
        """Every host's record, each aged by the time since it was read."""
        elapsed = max(0.0, self.clock() - self._view_at)
        return HostView(HostRecord(r.host, r.boot_id, r.boot_time, r.pid, r.pid_start, r.lease,
                                   r.age + elapsed, r.data)
                        for r in self._view.records.values())

    def stop(self) -> None:
        """A clean stop: no more renewals, and the record is withdrawn."""
        if not self.active:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        try:
            self.ds.hosts.withdraw()
        except (OSError, DropSiteError) as exc:
            log.warning("could not withdraw this host's record: %s", exc)
