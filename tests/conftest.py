"""What the whole suite shares: soak tests only on request, and a real daemon per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import RunningDaemon, daemon_session

# Tests that share one machine-wide resource run in one xdist worker, in order, when
# the suite runs in parallel (`make test`: pytest -n 2 --dist loadgroup): the multi-host
# bed's namespaces and mounts, the second Unix user, pm2's daemon.
SERIAL_GROUPS = {"multihost": "multihost", "test_strangers.py": "unix-users",
                 "test_daemon_pm2.py": "pm2"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests run only when asked for (`-m soak`, `make soak`), so running a folder
    by path stays quick even without `make test`'s `-m "not soak"`."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        group = next((g for key, g in SERIAL_GROUPS.items() if key in parts), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Start `dropsited up` subprocesses for this test; leftovers are killed after it."""
    with daemon_session(tmp_path) as make:
        yield make
