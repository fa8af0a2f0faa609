"""A big inbox is parsed once: after the first scan, claim_next parses only
the file it claims (0.1.0 parsed the whole folder on every poll, defect 7)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dropsited import DropSite
from dropsited.protocol import task as task_module


def make_inbox(ws: Path, n: int) -> None:
    DropSite(ws, durable=False)
    inbox = ws / "inbox"
    for i in range(n):
        fd = os.open(inbox / f"t{i:07d}.json", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b'{"title": "t%d", "priority": %d, "created_at": "2026-01-01T00:00:%02d.%06d+00:00"}'
                 % (i, 1 + i % 9, i // 1_000_000, i % 1_000_000))
        os.close(fd)


@pytest.fixture
def parse_counter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = task_module.Task.from_json.__func__

    def counting(cls, raw, default_id=None):
        calls[0] += 1
        return original(cls, raw, default_id)

    monkeypatch.setattr(task_module.Task, "from_json", classmethod(counting))
    return calls


def check_parses_once(ws: Path, n: int, parse_counter: list[int]) -> None:
    make_inbox(ws, n)
    ds = DropSite(ws, durable=False)
    first = ds.claim_next("w")
    assert first.priority == 1 and first.id == "t0000000"
    assert parse_counter[0] == n + 1  # the scan, then the claimed file itself
    parse_counter[0] = 0
    start = time.perf_counter()
    second = ds.claim_next("w")
    took = time.perf_counter() - start
    assert second.priority == 1 and second.id == "t0000009"
    assert parse_counter[0] == 1  # only the claimed file: nothing re-parsed
    assert took < 0.5, took  # generous: the parse count above is the real check
    # Even a forced rescan of the folder parses nothing it has seen before.
    ds.inbox_index().refresh_interval = 0
    parse_counter[0] = 0
    ds.claim_next("w")
    assert parse_counter[0] == 1


def test_20000_task_inbox_parsed_once(ws: Path, parse_counter: list[int]) -> None:
    check_parses_once(ws, 20_000, parse_counter)


@pytest.mark.soak
def test_100000_task_inbox_parsed_once(ws: Path, parse_counter: list[int]) -> None:
    check_parses_once(ws, 100_000, parse_counter)


def test_changed_file_is_parsed_again(ws: Path, parse_counter: list[int]) -> None:
    make_inbox(ws, 3)
    ds = DropSite(ws, durable=False)
    ds.inbox_index().refresh_interval = 0
    assert ds.claim_next("w", tags=["none"]) is None
    tmp = ws / "t0000002.tmp-new"
    tmp.write_text('{"title": "now tagged", "tags": ["none"]}')
    os.rename(tmp, ws / "inbox" / "t0000002.json")  # a new inode under the same name
    parse_counter[0] = 0
    assert ds.claim_next("w", tags=["none"]).title == "now tagged"
    assert parse_counter[0] == 2  # the replaced file once, the claimed file once


def test_other_agents_pile_is_stepped_over_once(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 tasks for a busy agent sort ahead of 100 for an idle one. Each of
    the idle agent's claims used to walk the whole pile again (quadratic);
    the walk now resumes where the previous claim stopped."""
    from dropsited.protocol import index as index_module
    make_inbox(ws, 0)
    inbox = ws / "inbox"
    for i in range(2100):
        doc = {"title": "t", "assigned_to": "busy" if i < 2000 else "idle",
               "created_at": f"2026-01-01T00:00:00.{i:06d}+00:00"}
        (inbox / f"t{i:07d}.json").write_text(json.dumps(doc))
    ds = DropSite(ws, durable=False)
    looked_at = [0]
    real = index_module.routable

    def counting(*args):
        looked_at[0] += 1
        return real(*args)

    monkeypatch.setattr(index_module, "routable", counting)
    claimed = 0
    while (task := ds.claim_next("idle")) is not None:
        ds.complete(task, {})
        claimed += 1
    assert claimed == 100
    assert looked_at[0] < 3 * 2100, looked_at[0]  # was about 100 * 2000
