"""A workspace on a 2 MiB tmpfs, filled up: clear errors, no partial files, no lost task.

Needs root to mount; where mounting is refused the tests are skipped, saying so.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaos.common import assert_all_done_once, folders_by_task, temp_files
from harness import agent, py

from dropsited import DropSite
from dropsited.protocol import TaskBuilder
from dropsited.protocol.errors import DropSiteError

DROPSITED = str(Path(sys.executable).parent / "dropsited")


def mount_tmpfs(path: Path, size: str = "2m") -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                             str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}): "
                    "the disk-full tests need root")


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest):
    """A factory mounting a 2 MiB tmpfs at a path; every mount is lazily unmounted at the end."""
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        mount_tmpfs(path)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system refuses; returns it (delete it to free space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 512, 1):  # then squeeze into the last partial page
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def task_files(ws: Path) -> list[str]:
    return sorted(f"{f}/{n}" for f in ("inbox", "active", "done", "failed", "blocked", "feedback")
                  for n in os.listdir(ws / f))


def test_submit_and_drop_fail_cleanly_when_full(small_disk, tmp_path: Path) -> None:
    ws = small_disk(tmp_path / "ws")
    ds = DropSite(ws)
    ds.submit(TaskBuilder("fits", "t").build())
    filler = fill(ws)
    before = task_files(ws)
    task = TaskBuilder("too big", "t").describe("x" * 200_000).build()
    with pytest.raises(DropSiteError) as caught:
        ds.submit(task)
    assert "No space left on device" in str(caught.value)
    result = subprocess.run([DROPSITED, "drop", str(ws), "--from", "t", "--title", "y" * 100,
                             "--description", "z" * 1000], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert task_files(ws) == before, "no partial task file, no temp file"
    filler.unlink()
    ds.submit(task)  # space is back: the same task goes in
    assert ds.locate(task.id).folder == "inbox"


def test_daemon_survives_a_full_disk_and_resumes(small_disk, run_daemon, tmp_path: Path) -> None:
    d = run_daemon([agent("echo", py("import sys; sys.stdin.read(); print('{\"ok\": 1}')"),
                          concurrency=2)], start=False)
    small_disk(d.ws)
    # The folders, on the new file system; the harness's DropSite holds descriptors of
    # the folders under the mount, so it is opened again.
    d.ds = DropSite(d.ws, durable=False)
    d.start()
    first = [d.drop(f"before {i}") for i in range(3)]
    for task_id in first:
        d.wait_in(task_id, "done")
    # Tasks that become ready only once the disk is full.
    ids = [d.ds.submit(TaskBuilder(f"while full {i}", "t").delay(1.0).max_retries(3)
                       .describe("d" * 20_000).build()) for i in range(10)]
    filler = fill(d.ws)
    time.sleep(4.0)
    assert d.proc.poll() is None, d.stderr()[-3000:]
    log = d.stderr()
    full_lines = [line for line in log.splitlines() if "No space left" in line]
    assert 1 <= len(full_lines) <= 3, "\n".join(full_lines[:20])  # once, not in a loop
    assert "Traceback" not in log
    assert all(len(f) == 1 for f in folders_by_task(d.ws).values())
    filler.unlink()
    for task_id in ids:
        d.wait_in(task_id, "done", timeout=20)
    assert d.stop() == 0
    assert_all_done_once(d.ws, set(first + ids))
    assert temp_files(d.ws) == []
