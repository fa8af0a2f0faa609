"""Run an example's manifest under the real daemon: `dropsited up` as a subprocess on a
temporary workspace, stopped with SIGTERM (and killed in the finalizer if it hangs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

DROPSITED = Path(sys.executable).parent / "dropsited"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class RunningDaemon:
    def __init__(self, manifest: Path, workspace: Path, log: Path, *extra: str) -> None:
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [DROPSITED, "up", "-c", manifest, "-w", workspace, "--fast", *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (drain), as a service manager would; the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def daemon(tmp_path: Path):
    """start(manifest, workspace, *extra args) -> RunningDaemon; whatever is left is killed afterwards."""
    started: list[RunningDaemon] = []

    def start(manifest: Path, workspace: Path, *extra: str) -> RunningDaemon:
        """The daemon, once it said it is ready (its workspace exists, its agents run)."""
        log = tmp_path / f"daemon-{len(started)}.log"
        running = RunningDaemon(manifest, workspace, log, *extra)
        started.append(running)
        wait_until(lambda: "dropsited ready" in running.log(), "the daemon to be ready",
                   daemon=running)
        return running

    yield start
    for running in started:
        running.kill()


def wait_until(check: Callable[[], object], what: str, timeout: float = 15,
               daemon: RunningDaemon | None = None) -> object:
    """Poll `check` until it returns something truthy; fail with `what` (and the log) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"the daemon exited while waiting for {what}:\n{daemon.log()}")
        time.sleep(0.05)
    log = f"\ndaemon log:\n{daemon.log()}" if daemon is not None else ""
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{log}")


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable:
    return wait_until


def dropsited(*args: object) -> str:
    """Run the CLI; its stdout (a failure shows stderr)."""
    out = subprocess.run([DROPSITED, *map(str, args)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(name="dropsited")
def dropsited_fixture() -> Callable:
    return dropsited
