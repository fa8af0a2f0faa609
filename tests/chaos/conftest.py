"""A real `dropsited up` per test, from tests/daemon's harness; leftovers are killed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon.daemon_harness import RunningDaemon, daemon_session


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    with daemon_session(tmp_path) as make:
        yield make
