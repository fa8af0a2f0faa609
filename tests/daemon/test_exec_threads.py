"""Regression (found by the 20,000-task chaos soak): slot threads add to an exec agent's
`children` while the main loop reads it (instances() on every loop turn, status records,
the orphan sweep), and the daemon died with `RuntimeError: dictionary changed size
during iteration`. The main thread's readers now take a snapshot first."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from dropsited.daemon.agents.exec_agent import ExecAgent
from dropsited.daemon.context import Context
from dropsited.daemon.manifest import parse_manifest
from dropsited.protocol import DropSite


class _Child:
    """What the readers use of a ChildProcess (its pid and age): this test is about
    the dict holding the children, not about processes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def ran_for(self) -> float:
        return 0.0

    def poll(self) -> int:
        return 0


def test_main_thread_readers_survive_slot_threads_adding_children(tmp_path: Path) -> None:
    manifest = parse_manifest("workspace: ws\nagents:\n  - {name: a, command: 'true'}\n",
                              tmp_path / "agents.yaml", environ={})
    ds = DropSite(tmp_path / "ws", durable=False)
    agent = ExecAgent(manifest.agents[0], Context(ds, "marker"))
    stop = threading.Event()

    def churn() -> None:  # what slot threads do: children come and go
        n = 0
        while not stop.is_set():
            n += 1
            agent.children[f"t{n}"] = _Child(n)
            if n > 50:
                agent.children.pop(f"t{n - 50}", None)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(3000):
            agent.instances(0)
            agent.held_pids()
            agent.describe(0)
            agent.check_memory()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
        agent.close()
