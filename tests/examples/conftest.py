"""Run an example's manifest under the real daemon (tests/harness.py): `dropsited up` as a
subprocess on a temporary workspace, stopped with SIGTERM (and killed in the finalizer if
it hangs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import RunningDaemon, daemon_session, wait_until

DROPSITED = Path(sys.executable).parent / "dropsited"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """start(manifest, workspace, *extra args) -> RunningDaemon, once it is ready (its
    workspace exists, its agents run); whatever is left is killed afterwards."""
    with daemon_session(tmp_path) as make:
        def start(manifest: Path, workspace: Path, *extra: str) -> RunningDaemon:
            return make(None, "-w", workspace, "--fast", *extra, manifest=manifest, ws=workspace)
        yield start


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
