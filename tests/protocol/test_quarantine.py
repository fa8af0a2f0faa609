"""What the inbox does with files that are not (yet) tasks: leave a slow writer
alone for the grace period, then quarantine with a reason; never follow a
link, never open a FIFO, never read an oversize file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dropsited import DropSite, TaskBuilder

from .conftest import FakeClock

GRACE = 30.0


def inbox_ws(ws: Path) -> tuple[DropSite, FakeClock]:
    clock = FakeClock()
    return DropSite(ws, durable=False, clock=clock, corrupt_grace=GRACE), clock


def reason_for(ws: Path, name: str) -> dict:
    return json.loads((ws / "quarantine" / f"{name}.reason").read_text())


def test_half_written_file_left_alone_then_completed(ws: Path) -> None:
    ds, clock = inbox_ws(ws)
    path = ws / "inbox" / "slow.json"
    path.write_text('{"title": "half')  # `echo ... > inbox/slow.json` mid-way
    assert ds.claim_next("w") is None
    clock.advance(GRACE - 1)
    assert ds.claim_next("w") is None
    assert path.exists() and not (ws / "quarantine").exists()  # made when first needed
    with path.open("a") as fh:
        fh.write(' written"}')
    task = ds.claim_next("w")
    assert task is not None and task.id == "slow" and task.title == "half written"


def test_unparsable_file_quarantined_after_grace_with_reason(ws: Path) -> None:
    ds, clock = inbox_ws(ws)
    (ws / "inbox" / "broken.json").write_text('{"title": ')
    good = ds.submit(TaskBuilder("good", "me").build())
    assert ds.claim_next("w").id == good
    clock.advance(GRACE + 1)
    assert ds.claim_next("w") is None
    assert not (ws / "inbox" / "broken.json").exists()
    assert (ws / "quarantine" / "broken.json").read_text() == '{"title": '
    reason = reason_for(ws, "broken.json")
    assert reason["file"] == "inbox/broken.json"
    assert "not valid JSON" in reason["error"]
    assert ds.quarantined()[0]["file"] == "inbox/broken.json"


def test_grace_restarts_when_the_writer_writes_again(ws: Path) -> None:
    ds, clock = inbox_ws(ws)
    path = ws / "inbox" / "x.json"
    path.write_text("{")
    ds.claim_next("w")
    clock.advance(GRACE + 5)
    path.write_text('{"ti')  # still being written: new mtime
    os.utime(path, (clock.now, clock.now))
    assert ds.claim_next("w") is None
    assert path.exists()


@pytest.mark.parametrize("content, needle", [
    (b'{"title": "caf\xe9"}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"title": 5}', "title: expected string, got integer"),
    (b'{"title": "x", "priority": "high"}', "priority: expected integer, got string"),
    (b'{"title": "x", "tags": "code"}', "tags: expected array of strings, got string"),
    (b'{"title": "x", "tags": [1]}', "tags[0]: expected string, got integer"),
    (b'{"title": "x", "history": [{"at": "now"}]}', "history[0].status"),
    (b'{"title": "x", "context": []}', "context: expected object, got array"),
    (b'{"title": "x", "retry_count": true}', "retry_count: expected integer, got boolean"),
    (b'{"title": "x", "id": "other"}', "does not match the file name"),
    (b'["a list"]', "must be a JSON object"),
])
def test_bad_content_quarantined_naming_file_and_error(ws: Path, content: bytes, needle: str) -> None:
    ds, clock = inbox_ws(ws)
    (ws / "inbox" / "bad.json").write_bytes(content)
    assert ds.claim_next("w") is None
    assert (ws / "inbox" / "bad.json").exists()
    clock.advance(GRACE + 1)
    assert ds.claim_next("w") is None
    reason = reason_for(ws, "bad.json")
    assert reason["file"] == "inbox/bad.json"
    assert needle in reason["error"]


def test_minimal_foreign_task_uses_file_stem_as_id(ds: DropSite, ws: Path) -> None:
    (ws / "inbox" / "hello-1.json").write_text('{"title": "from bash"}')
    task = ds.claim_next("w")
    assert (task.id, task.title, task.created_by, task.priority) == ("hello-1", "from bash", "unknown", 5)
    ds.complete(task, {})
    assert json.loads((ws / "done" / "hello-1.json").read_text())["id"] == "hello-1"


def test_symlink_to_outside_file_never_followed_nor_moved(ws: Path, tmp_path: Path) -> None:
    ds, clock = inbox_ws(ws)
    outside = tmp_path / "secret.json"
    outside.write_text('{"title": "not yours"}')
    os.utime(outside, (1_000_000, 1_000_000))  # a known atime to compare
    before = os.stat(outside)
    link = ws / "inbox" / "evil.json"
    link.symlink_to(outside)
    assert ds.claim("w", "evil") is None
    assert ds.claim_next("w") is None
    assert ds.list_tasks("inbox") == []
    assert ds.get_task("evil") is None
    clock.advance(GRACE + 1)
    assert ds.claim_next("w") is None
    after = os.stat(outside)
    assert (after.st_atime_ns, after.st_mtime_ns, after.st_ino) == (
        before.st_atime_ns, before.st_mtime_ns, before.st_ino)
    assert outside.read_text() == '{"title": "not yours"}'
    moved = ws / "quarantine" / "evil.json"
    assert moved.is_symlink() and os.readlink(moved) == str(outside)
    assert "symbolic link" in reason_for(ws, "evil.json")["error"]


def test_symlinked_folder_entry_in_active_not_followed(ws: Path, tmp_path: Path) -> None:
    ds, _ = inbox_ws(ws)
    outside = tmp_path / "target.json"
    outside.write_text('{"title": "x"}')
    (ws / "active" / "abc.json").symlink_to(outside)
    ds.reap(stale=-1, include_live=True)
    assert outside.read_text() == '{"title": "x"}' and outside.exists()
    assert ds.list_tasks("active") == []


@pytest.mark.timeout(20)
def test_fifo_never_opened(ws: Path) -> None:
    """Opening a FIFO for reading blocks until a writer appears: this test
    would hang (and hit its timeout) if any code path opened it."""
    ds, clock = inbox_ws(ws)
    fifo = ws / "inbox" / "pipe.json"
    os.mkfifo(fifo)
    assert ds.claim_next("w") is None
    assert ds.claim("w", "pipe") is None
    assert ds.list_tasks("inbox") == []
    assert ds.get_task("pipe") is None
    clock.advance(GRACE + 1)
    assert ds.claim_next("w") is None
    assert "not a regular file" in reason_for(ws, "pipe.json")["error"]


def test_oversize_file_quarantined_without_reading_it(ws: Path) -> None:
    ds, clock = inbox_ws(ws)
    huge = ws / "inbox" / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(64 * 1024**3)  # 64 GiB, sparse: reading it would take minutes
    start = time.monotonic()
    assert ds.claim_next("w") is None
    clock.advance(GRACE + 1)
    assert ds.claim_next("w") is None
    assert time.monotonic() - start < 5
    assert "over the" in reason_for(ws, "huge.json")["error"]
    assert (ws / "quarantine" / "huge.json").stat().st_size == 64 * 1024**3


def test_non_task_names_wait_the_grace_then_are_quarantined(ws: Path) -> None:
    """A foreign writer's temp name or a dot-file is left alone while it changes
    (and for the grace period after), then quarantined like any bad input."""
    ds, clock = inbox_ws(ws)
    names = ["job.json.part", ".job.json.swp", "notes.txt", "0123.tmp"]
    for name in names:
        (ws / "inbox" / name).write_text('{"title": ')
    assert ds.claim_next("w") is None
    clock.advance(GRACE / 2)
    assert ds.claim_next("w") is None
    assert sorted(os.listdir(ws / "inbox")) == sorted(names)  # within the grace: untouched
    (ws / "inbox" / "job.json.part").write_text('{"title": "done writing"}')
    os.rename(ws / "inbox" / "job.json.part", ws / "inbox" / "job.json")
    assert ds.claim_next("w").title == "done writing"
    clock.advance(GRACE * 10)
    ds.sweep_inbox()
    assert os.listdir(ws / "inbox") == []
    reasons = {r["file"] for r in ds.quarantined()}
    assert reasons == {f"inbox/{n}" for n in names if n != "job.json.part"}


def test_quarantine_keeps_both_of_two_same_named_files(ws: Path) -> None:
    ds, clock = inbox_ws(ws)
    for _ in range(2):
        (ws / "inbox" / "dup.json").write_text("nope")
        ds.claim_next("w")
        clock.advance(GRACE + 1)
        ds.claim_next("w")
    assert len([n for n in os.listdir(ws / "quarantine") if n.endswith(".reason")]) == 2
