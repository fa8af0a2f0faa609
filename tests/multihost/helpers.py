"""What the multi-host tests share: manifests with per-host agents, run logs, where tasks are.

Every host's daemon gets agents named after the host (`work-alpha`, `slow-alpha`), so
agent records and logs never collide and a task can be routed to one host by assigning
it to that host's agent. Each agent appends `<task id> <host name>` to a run log on the
host's own disk (never the shared one: O_APPEND is not atomic across network clients),
which is how the tests count executions.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness

from dropsited import DropSite
from dropsited.protocol import TaskBuilder

from .bed import Bed, HostDaemon, Workspace, write_manifest

FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback")
# An exec agent: log the run, sleep $SLEEP, answer with the host it ran on.
AGENT = ('echo "$DROPSITE_TASK_ID $(hostname)" >> "$RUNLOG"; sleep "$SLEEP"; '
         'echo "{\\"host\\": \\"$(hostname)\\"}"')
DAEMON_ARGS = ("--fast", "--grace", "2", "--retry-base", "0.05", "--log-level", "info")


def need(bed: Bed, fs: str) -> None:
    """Skip, saying why, when `fs` is not mounted in the bed's hosts."""
    import pytest

    from .bed import BedUnavailable
    try:
        bed.require(fs)
    except BedUnavailable as exc:
        pytest.skip(str(exc))


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """tests/harness.py's, polling every 50 ms: the mounts are network file systems."""
    return harness.wait_until(predicate, timeout, what, interval=0.05)


@dataclass
class HostSetup:
    """One host's manifest and run log for one test."""

    host: str
    manifest: Path
    runlog: Path


def host_setup(bed: Bed, host: str, ws: Workspace, *, concurrency: int = 2,
               slow: float = 20.0, slow_concurrency: int = 3) -> HostSetup:
    """A manifest for `host`: `work-<host>` (tag `work`, instant) and `slow-<host>`
    (tag `slow`, sleeps `slow` seconds), both logging runs to a host-local file.

    Both are tagged: an untagged agent takes every task, whatever the tags (MANIFEST.md
    says "every task whose tags no other agent claims"; the daemon does not do that)."""
    tag = os.path.basename(ws.path)
    local = bed.hosts[host].dir
    runlog = local / f"runs-{tag}.log"
    runlog.touch()
    agents = [
        {"name": f"work-{host}", "command": AGENT, "tags": ["work"], "concurrency": concurrency,
         "env": {"RUNLOG": str(runlog), "SLEEP": "0"},
         "log": {"file": str(local / f"work-{tag}.log")}},
        {"name": f"slow-{host}", "command": AGENT, "tags": ["slow"],
         "concurrency": slow_concurrency, "env": {"RUNLOG": str(runlog), "SLEEP": str(slow)},
         "log": {"file": str(local / f"slow-{tag}.log")}},
    ]
    manifest = write_manifest(local / f"agents-{tag}.yaml", ws.path, agents)
    return HostSetup(host, manifest, runlog)


def start(bed: Bed, setup: HostSetup, *args: str, **kw: object) -> HostDaemon:
    """`dropsited up --poll 0.5` for this host's manifest, with the suite's fast options."""
    return bed.start_daemon(setup.host, setup.manifest, *DAEMON_ARGS, *args, **kw)


def dropper(ws: Workspace) -> DropSite:
    """A DropSite on the observer's mount: the tests drop and inspect through it."""
    return DropSite(ws.view, durable=False)


def drop(ds: DropSite, title: str = "t", *, to: str | None = None, slow: bool = False) -> str:
    builder = TaskBuilder(title, "test").max_retries(5)
    if to:
        builder = builder.assign(to)
    builder = builder.tag("slow" if slow else "work")
    return ds.submit(builder.build())


def where(ws: Workspace) -> dict[str, list[str]]:
    """task id -> every folder holding a file for it (more than one is the bug to catch)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for folder in FOLDERS:
        for name in os.listdir(ws.view / folder):
            if name.endswith(".json") and not name.startswith("."):
                found[name[:-5].split("~")[0]].append(folder)
    return found


def in_folder(ws: Workspace, folder: str) -> set[str]:
    return {n[:-5].split("~")[0] for n in os.listdir(ws.view / folder)
            if n.endswith(".json") and not n.startswith(".")}


def runs(*setups: HostSetup) -> collections.Counter:
    """(task id, host) -> executions, from the hosts' run logs."""
    counted: collections.Counter = collections.Counter()
    for setup in setups:
        for line in setup.runlog.read_text().splitlines():
            task_id, host = line.split()
            counted[(task_id, host)] += 1
    return counted


def runs_per_task(*setups: HostSetup) -> collections.Counter:
    counted: collections.Counter = collections.Counter()
    for (task_id, _), n in runs(*setups).items():
        counted[task_id] += n
    return counted


def late_results(ws: Workspace) -> list[dict]:
    """Every late-results line, whatever file of the workspace's root holds them
    (today one shared late-results.jsonl; per host once issue 13 is done)."""
    lines = []
    for path in ws.view.glob("late-results*.jsonl"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def history(ws: Workspace, task_id: str) -> list[dict]:
    """The history of a task wherever it is (none if it is nowhere).

    Found by listing the folders, not by lstat: the observer's sshfs mount caches
    attributes (sshfs' cache_timeout, 20 s), so a name another host renamed away can
    still stat as present there."""
    for folder in FOLDERS:
        for name in os.listdir(ws.view / folder):
            if name.endswith(".json") and name[:-5].split("~")[0] == task_id:
                try:
                    return list(json.loads((ws.view / folder / name).read_text())["history"])
                except (FileNotFoundError, ValueError, KeyError):
                    continue
    return []
