"""Group commit (protocol/group_commit.py): moves of one batch share one folder fsync,
nothing is in done/ before its file is synced, and a kill -9 anywhere in a batch loses
nothing: after recovery every task is in exactly one folder, and every done/ file is a
valid task with its result."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dropsited import DropSite
from dropsited.protocol import TaskBuilder
from dropsited.protocol.group_commit import GroupCommit

FOLDERS = ("inbox", "active", "done", "failed")


def claimed(ds: DropSite, n: int) -> list:
    for i in range(n):
        ds.submit(TaskBuilder(f"t{i}", "test").build())
    return [ds.claim_next("a") for _ in range(n)]


def test_a_batch_shares_one_folder_fsync_and_names_nothing_before_the_sync(tmp_path, monkeypatch):
    ds = DropSite(tmp_path / "ws", durable=True)
    tasks = claimed(ds, 5)
    done_dir = tmp_path / "ws" / "done"
    seen: list[tuple[str, list[str]]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append((kind, sorted(p.name for p in done_dir.glob("*.json"))))
        real_fsync(fd)

    with ds.store.group_commit() as batch:
        assert isinstance(batch, GroupCommit)
        for i, task in enumerate(tasks):
            ds.complete(task, {"n": i})
        assert len(batch) == 5 and not list(done_dir.glob("*.json"))  # queued, not moved
        monkeypatch.setattr(os, "fsync", spy)
        failures = batch.flush()
        monkeypatch.setattr(os, "fsync", real_fsync)
    assert failures == [None] * 5
    files = [names for kind, names in seen if kind == "file"]
    folders = [names for kind, names in seen if kind == "folder"]
    assert len(files) == 5 and all(names == [] for names in files)  # synced before named
    assert len(folders) == 1 and len(folders[0]) == 5  # one fsync of done/, after the names
    for i, task in enumerate(tasks):
        assert ds.get_task(task.id).result == {"n": i}
    assert not [p for p in done_dir.iterdir() if p.name.startswith(".")]


def test_fast_mode_has_no_batch_and_a_lost_claim_is_reported_per_move(tmp_path):
    fast = DropSite(tmp_path / "fast", durable=False)
    with fast.store.group_commit() as batch:
        assert batch is None
    ds = DropSite(tmp_path / "ws", durable=True)
    tasks = claimed(ds, 2)
    with ds.store.group_commit() as batch:
        for task in tasks:
            ds.complete(task, {})
        held = next((tmp_path / "ws" / "active").glob(f"{tasks[0].id}~*"))
        held.rename(tmp_path / "ws" / "inbox" / f"{tasks[0].id}.json")  # taken meanwhile
        first, second = batch.flush()
    assert type(first.error).__name__ == "ClaimLost" and not first.committed
    assert second is None
    assert ds.locate(tasks[0].id).folder == "inbox" and ds.locate(tasks[1].id).folder == "done"
    assert not [p for p in (tmp_path / "ws" / "done").iterdir() if p.name.startswith(".")]


# A process that claims N tasks, completes them in one batch and is killed by SIGKILL at
# one point of the flush: before the sync, at the 3rd commit, at the 3rd final name, or
# at the folder's fsync.
CRASHER = textwrap.dedent("""\
    import os, signal, stat, sys
    from dropsited import DropSite
    from dropsited.protocol import TaskBuilder, group_commit
    from dropsited.protocol.store import TaskStore

    ws, where, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ds = DropSite(ws, durable=True)
    for i in range(n):
        ds.submit(TaskBuilder(f"t{i}", "test").build())
    tasks = [ds.claim_next("a") for _ in range(n)]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def nth(name, k):
        real, calls = getattr(TaskStore, name), []
        def wrapped(self, *a, **kw):
            calls.append(1)
            if len(calls) == k:
                die()
            return real(self, *a, **kw)
        setattr(TaskStore, name, wrapped)

    if where == "sync":
        group_commit.start_writeback = lambda fd: die()
    elif where == "commit":
        nth("_commit", 3)
    elif where == "place":
        nth("_place", 3)
    elif where == "folder":
        real = os.fsync
        os.fsync = lambda fd: die() if stat.S_ISDIR(os.fstat(fd).st_mode) else real(fd)
    with ds.store.group_commit() as batch:
        for i, task in enumerate(tasks):
            ds.complete(task, {"n": i})
        batch.flush()
    print("not killed")
""")


@pytest.mark.parametrize(("where", "done_after"), [("sync", 0), ("commit", 2), ("place", 3),
                                                   ("folder", 6)])
def test_a_kill_9_mid_batch_loses_nothing(tmp_path: Path, where: str, done_after: int) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    ws = tmp_path / "ws"
    proc = subprocess.run([sys.executable, str(script), str(ws), where, "6"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    ds = DropSite(ws, durable=True)
    ds.recover()
    where_is: dict[str, list[str]] = {}
    for folder in FOLDERS:
        for path in (ws / folder).iterdir():
            assert not path.name.startswith("."), f"left behind: {folder}/{path.name}"
            task = ds.store.load(path)  # every file is a valid task
            where_is.setdefault(task.id, []).append(folder)
            if folder == "done":
                assert task.result == {"n": int(task.title[1:])}
    assert len(where_is) == 6 and all(len(f) == 1 for f in where_is.values()), where_is
    folders = sorted(f[0] for f in where_is.values())
    assert folders == ["done"] * done_after + ["inbox"] * (6 - done_after)
