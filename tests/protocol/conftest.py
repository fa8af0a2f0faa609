"""Shared helpers for the protocol tests: real folders in tmp_path, real child
processes, and a fake clock (the only fake) for the timing rules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import FakeClock

from dropsited import DropSite
from dropsited.protocol.store import TASK_FOLDERS

__all__ = ["FakeClock"]  # the suite's one fake clock (tests/harness.py), for these tests

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def ds(ws: Path) -> DropSite:
    return DropSite(ws, durable=False, retry_base=0)


def where(root: Path, task_id: str) -> list[str]:
    """Every folder holding a file (or our temp file) for this task id."""
    found = []
    for folder in TASK_FOLDERS:
        for name in os.listdir(root / folder):
            stem = name.lstrip(".").split("~")[0].removesuffix(".json").removesuffix(".tmp")
            if stem == task_id:
                found.append(folder)
    return found


def all_task_files(root: Path) -> dict[str, list[str]]:
    """task id -> folders, for every `*.json` in the six task folders."""
    seen: dict[str, list[str]] = {}
    for folder in TASK_FOLDERS:
        for name in os.listdir(root / folder):
            if name.endswith(".json") and not name.startswith("."):
                seen.setdefault(name[:-5].split("~")[0], []).append(folder)
    return seen


def temp_files(root: Path) -> list[str]:
    return [f"{folder}/{name}" for folder in TASK_FOLDERS
            for name in os.listdir(root / folder) if not name.endswith(".json")]


def python_child(code: str, *args: str, **popen: object) -> subprocess.Popen:
    """Start `python -c code args...` with this repository importable."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            env=env, **popen)  # type: ignore[arg-type]


def run_child(code: str, *args: str, timeout: float = 60) -> str:
    """Run a child to completion and return its stdout; fail the test on a bad exit."""
    proc = python_child(code, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return out
