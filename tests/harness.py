"""What the suites share: one `wait_until`, a fake clock, and a real `dropsited up` in
tmp_path whose task folders a test watches.

    @pytest.fixture
    def run_daemon(tmp_path):
        with daemon_session(tmp_path) as make:
            yield make

    def test_x(run_daemon):
        d = run_daemon([agent("echo", ["/bin/echo", "hi"])])
        task_id = d.drop("hello")
        assert d.wait_in(task_id, "done")["result"] == {"output": "hi"}
        assert d.stop() == 0

A daemon runs either a manifest written from agent dicts (as above) or a manifest file
of the repository (`make(None, "-w", ws, manifest=path)`, for the examples). Every wait
is a deadline poll (10-20 ms); leaving `daemon_session` kills whatever a test left
behind: the daemon, its agents and their grandchildren (anything whose command line or
environment names tmp_path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import yaml

from dropsited import DropSite
from dropsited.protocol import TaskBuilder

DROPSITED = str(Path(sys.executable).parent / "dropsited")
POLL = 0.015
FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback")
# What every daemon a test writes the manifest for runs with: quick drains and retries.
TEST_ARGS = ("--grace", "2", "--retry-base", "0.05", "--fast", "--log-level", "info")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "", *,
               daemon: RunningDaemon | None = None, interval: float = POLL) -> object:
    """Poll `predicate` until it returns something truthy and return that; AssertionError
    at the deadline, or as soon as `daemon` has exited (with its log in both cases)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        log = f"\ndaemon log:\n{daemon.stderr()[-4000:]}" if daemon is not None else ""
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"the daemon exited while waiting for {what or predicate}{log}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}"
                                 f"{log}")
        time.sleep(interval)


class FakeClock:
    """Seconds that only move when a test says so (epoch seconds by default)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gone(pid: int) -> bool:
    """Dead, or a zombie waiting for its reaper."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def py(code: str) -> list[str]:
    """A `sys.executable -c` command for the manifest."""
    return [sys.executable, "-c", code]


def agent(name: str, command: list[str] | str, **keys: object) -> dict:
    return {"name": name, "command": command, **keys}


class RunningDaemon:
    """One `dropsited up` subprocess and its workspace.

    With `agents`, the manifest is written to tmp_path/agents.yaml and the daemon runs with
    TEST_ARGS; with `manifest`, that file is used as is and only `args` are passed."""

    def __init__(self, tmp_path: Path, agents: list[dict] | None, args: list[str],
                 env: dict | None, defaults: dict | None, *, manifest: Path | None = None,
                 ws: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.ws = ws or tmp_path / "ws"
        self.manifest = manifest or tmp_path / "agents.yaml"
        self.args = [*TEST_ARGS, *args] if manifest is None else list(args)
        self.env = {**os.environ, **(env or {})}
        if manifest is None:
            self.write_manifest(agents or [], defaults)
        self.ds = DropSite(self.ws, durable=False)
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.command = [DROPSITED]  # a test may run another interpreter

    def write_manifest(self, agents: list[dict], defaults: dict | None = None) -> None:
        doc: dict = {"workspace": "ws", "agents": agents}
        if defaults:
            doc["defaults"] = defaults
        self.manifest.write_text(yaml.safe_dump(doc, sort_keys=False))

    # -- the process ----------------------------------------------------------
    @property
    def stderr_path(self) -> Path:
        return self.tmp_path / f"daemon-{self.runs}.err"

    def start(self, wait: bool = True) -> RunningDaemon:
        self.runs += 1
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*self.command, "up", "-c", str(self.manifest), *map(str, self.args)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=self.env,
                cwd=self.tmp_path)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.stderr()}")
            record = self.daemon_record()
            return record.get("pid") == self.proc.pid and record.get("state") == "running"
        wait_until(ready, timeout, "daemon.json state running")

    def daemon_record(self) -> dict:
        try:
            return json.loads((self.ws / ".dropsited" / "daemon.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def stderr(self) -> str:
        """What the daemon wrote (stdout and stderr, one file per run)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the daemon and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout}s:\n{self.stderr()}") from None

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    # -- tasks --------------------------------------------------------------------
    def drop(self, title: str = "t", *, to: str | None = None, tags: tuple[str, ...] = (),
             context: dict | None = None, max_retries: int = 3) -> str:
        builder = TaskBuilder(title, "test").max_retries(max_retries)
        if to:
            builder = builder.assign(to)
        if tags:
            builder = builder.tag(*tags)
        if context:
            builder = builder.context(context)
        return self.ds.submit(builder.build())

    def folder_of(self, task_id: str) -> str | None:
        found = self.ds.store.locate(task_id)
        return found.folder if found else None

    def folders_holding(self, task_id: str) -> list[str]:
        """Every folder with a file for `task_id` (more than one is a protocol bug)."""
        def holds(name: str) -> bool:
            return name == f"{task_id}.json" or name.startswith(task_id + "~")  # active/ claims
        return [f for f in FOLDERS if any(holds(p.name) for p in (self.ws / f).iterdir())]

    def wait_in(self, task_id: str, folder: str, timeout: float = 10.0) -> dict:
        """Wait for the task to reach `folder`; returns the task document there."""
        def there() -> dict | None:
            path = self.ws / folder / f"{task_id}.json"
            if folder == "active":
                hits = list((self.ws / "active").glob(f"{task_id}~*.json"))
                path = hits[0] if hits else path
            try:
                return json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                return None
        try:
            return wait_until(there, timeout, f"{task_id} in {folder}/")
        except AssertionError:
            raise AssertionError(f"{task_id} not in {folder}/ but in {self.folder_of(task_id)}/ "
                                 f"after {timeout}s; daemon log:\n{self.stderr()[-4000:]}") from None

    def agent_record(self, name: str) -> dict:
        try:
            return json.loads((self.ws / "agents" / f"{name}.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_agent(self, name: str, predicate: Callable[[dict], bool], timeout: float = 10.0,
                   what: str = "") -> dict:
        def check() -> dict | None:
            record = self.agent_record(name)
            return record if record and predicate(record) else None
        try:
            return wait_until(check, timeout, what or f"agent {name} record")
        except AssertionError:
            raise AssertionError(f"agent {name}: {what}; record {self.agent_record(name)}\n"
                                 f"{self.stderr()[-3000:]}") from None

    def log_text(self, name: str) -> str:
        path = self.ws / "agents" / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
        return subprocess.run([DROPSITED, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, cwd=self.tmp_path)


def processes_of(tmp_path: Path) -> list[psutil.Process]:
    """Live processes whose command line or environment names tmp_path (ours, never others')."""
    mark = str(tmp_path)
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if any(mark in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if any(mark in value for value in env.values()):
            found.append(proc)
    return found


def kill_leftovers(tmp_path: Path) -> list[int]:
    procs = processes_of(tmp_path)
    for proc in procs:
        with suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=3)
    return [p.pid for p in procs]


@contextmanager
def daemon_session(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """`make(agents, *args, env=None, defaults=None, start=True, manifest=None, ws=None)`
    -> RunningDaemon; on exit,
    every daemon is killed and so is any process that names tmp_path."""
    started: list[RunningDaemon] = []

    def make(agents: list[dict] | None, *args: str, env: dict | None = None,
             defaults: dict | None = None, start: bool = True, manifest: Path | None = None,
             ws: Path | None = None) -> RunningDaemon:
        daemon = RunningDaemon(tmp_path, agents, list(args), env, defaults, manifest=manifest,
                               ws=ws)
        started.append(daemon)
        return daemon.start() if start else daemon

    try:
        yield make
    finally:
        for daemon in started:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=5)
        kill_leftovers(tmp_path)

