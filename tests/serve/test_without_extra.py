"""`pip install dropsited` without the 'serve' extra: the core works, and `dropsited mcp`
and `dropsited web` say which extra to install (exit 2) instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DROPSITED = str(Path(sys.executable).parent / "dropsited")


@pytest.fixture
def without_extra(tmp_path: Path) -> dict:
    """An environment in which the extra's packages cannot be imported."""
    stubs = tmp_path / "stubs"
    for name in ("mcp", "starlette", "uvicorn"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f'raise ImportError("no module {name}")\n')
    return {**os.environ, "PYTHONPATH": str(stubs)}


def run(env: dict, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([DROPSITED, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=60)


def test_servers_name_the_extra_and_the_rest_works(tmp_path: Path, without_extra: dict) -> None:
    ws = tmp_path / "ws"
    assert run(without_extra, "init", ws).returncode == 0
    for command in ("mcp", "web"):
        refused = run(without_extra, command, ws)
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            f"error: dropsited {command} needs the optional 'serve' extra ("
            f"{'mcp' if command == 'mcp' else 'starlette'} is not installed): "
            "pip install 'dropsited[serve]'"]
    task_id = run(without_extra, "drop", ws, "--from", "me", "--title", "t", "-q").stdout.strip()
    assert run(without_extra, "wait", ws, task_id, "--timeout", "0.1").returncode == 124
    assert run(without_extra, "--help").returncode == 0
