"""A real `dropsited up` per test, from tests/daemon's harness; leftovers are killed.

Soak tests here run only when asked for (`-m soak`), so that running this folder by path
stays quick even without `make test`'s `-m "not soak"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon.daemon_harness import RunningDaemon, daemon_session

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak")
    for item in items:
        if "soak" in item.keywords and Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(skip)


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    with daemon_session(tmp_path) as make:
        yield make
