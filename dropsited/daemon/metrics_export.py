"""Publishing the metrics: `.dropsited/metrics.prom` every few seconds, and with
`dropsited up --metrics ADDR:PORT` an HTTP endpoint served by the official
`prometheus_client` (the optional extra `metrics`).

Both run in one thread of their own, off the loop and off the dispatch path: it lists
the folders (queue depths, the oldest task in inbox/, quarantined files) through its own
`WorkspaceFolders` (dir fds opened without following links), renders the text format
(metrics.py) and replaces the file with the one atomic record writer. The HTTP endpoint
computes the same families at each scrape.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from ..protocol import DropSiteError
from ..protocol.folders import QUARANTINE, STATE_DIR, TASK_FOLDERS, WorkspaceFolders
from ..protocol.holder import this_host
from .context import log, log_limited
from .metrics import PREFIX, Family, MetricsRecorder, Sample, render

METRICS_FILE = "metrics.prom"
WRITE_INTERVAL = 5.0
EXTRA_HINT = "pip install 'dropsited[metrics]'"


class MetricsUnavailable(Exception):
    """`--metrics` without prometheus_client, or an address it cannot bind."""


def metrics_file(shared: bool) -> str:
    """metrics.prom; on a file system other hosts share, metrics.<host>.prom, since
    hosts never write one file (docs/HOSTS.md)."""
    return f"metrics.{this_host()}.prom" if shared else METRICS_FILE


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9108', ':9108' or '9108' (loopback unless a host is given; port 0
    takes any free port, which the daemon's log names)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--metrics: expected [HOST:]PORT with a port 0-65535, got {text!r}")
    return host, int(port)


def folder_families(folders: WorkspaceFolders, now_wall: float) -> list[Family]:
    """Queue depths, the age of the oldest task in inbox/ and the quarantine's size."""
    depths, oldest = [], None
    for folder in TASK_FOLDERS:
        count = 0
        for entry in folders.entries(folder):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                count += 1
                if folder == "inbox":
                    with contextlib.suppress(OSError):
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                        oldest = mtime if oldest is None else min(oldest, mtime)
        depths.append(Sample(PREFIX + "queue_tasks", (("folder", folder),), float(count)))
    quarantined = sum(1 for e in folders.entries(QUARANTINE)
                      if e.name.endswith(".reason") and not e.name.startswith("."))
    age = 0.0 if oldest is None else max(0.0, now_wall - oldest)
    return [
        Family(PREFIX + "queue_tasks", "gauge", "Task files in each folder.", tuple(depths)),
        Family(PREFIX + "inbox_oldest_age_seconds", "gauge",
               "Seconds since the oldest task in inbox/ was written there (0 when empty).",
               (Sample(PREFIX + "inbox_oldest_age_seconds", (), age),)),
        Family(PREFIX + "quarantined_files", "gauge", "Files kept aside in quarantine/.",
               (Sample(PREFIX + "quarantined_files", (), float(quarantined)),)),
    ]


class MetricsExporter:
    """The thread that writes metrics.prom every `interval` s and feeds the HTTP endpoint."""

    def __init__(self, workspace: Path, recorder: MetricsRecorder,
                 file_name: str = METRICS_FILE, interval: float = WRITE_INTERVAL) -> None:
        self.workspace = workspace
        self.file_name = file_name
        self.recorder = recorder
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="metrics")
        self._thread.start()

    def serve(self, address: str) -> str:
        """Serve /metrics on `address` with prometheus_client; the URL it listens on."""
        try:
            from .metrics_http import start_server
        except ImportError:
            raise MetricsUnavailable(f"--metrics needs prometheus_client: {EXTRA_HINT}") from None
        host, port = parse_address(address)
        try:
            self._server = start_server(host, port, self.collect)
        except OSError as exc:
            raise MetricsUnavailable(f"--metrics {address}: cannot listen: "
                                     f"{exc.strerror or exc}") from None
        return f"http://{host}:{self._server.server_port}/metrics"

    def collect(self) -> list[Family]:
        """Every family now (a scrape's, on the HTTP server's thread)."""
        folders = WorkspaceFolders(self.workspace)
        try:
            return folder_families(folders, time.time()) + self.recorder.families()
        finally:
            folders.close()

    def write_once(self) -> None:
        families = self.collect()
        folders = WorkspaceFolders(self.workspace)
        try:
            folders.make_folder(STATE_DIR)
            folders.write_record(STATE_DIR, self.file_name, render(families))
        finally:
            folders.close()

    def _run(self) -> None:
        while True:
            try:
                self.write_once()
            except (DropSiteError, OSError) as exc:
                log_limited("metrics", f"cannot write {STATE_DIR}/{self.file_name}: {exc}")
            except Exception:  # never let the metrics thread die and go silent
                log.exception("metrics: writing failed")
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """A last write (the final counts), then the endpoint closes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with contextlib.suppress(DropSiteError, OSError):
            self.write_once()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
