"""`dropsited archive` end to end: dry run, real moves, show and list of archived tasks,
--compress readable with gzip, and the refusals (a task id that is a path, a linked
archive/)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dropsited import DropSite, TaskBuilder

DROPSITED = str(Path(sys.executable).parent / "dropsited")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DROPSITED, *args], capture_output=True, text=True, timeout=30)


def _finished(ws: Path, n: int, folder: str = "done") -> list[str]:
    ds = DropSite(ws, durable=False)
    ids = []
    for i in range(n):
        task = TaskBuilder(f"t{i}", "me").tag("x").build()
        ds.submit(task)
        claimed = ds.claim("w", task.id)
        if folder == "done":
            ds.complete(claimed, {"n": i})
        else:
            claimed.max_retries = 0
            ds.fail(claimed, "boom")
        ids.append(task.id)
    return ids


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    DropSite(tmp_path / "ws", durable=False)
    return tmp_path / "ws"


def test_dry_run_lists_and_moves_nothing_then_a_real_run_moves(ws: Path):
    ids = _finished(ws, 3)
    dry = cli("archive", str(ws), "--older-than", "0s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert sorted(m["id"] for m in json.loads(dry.stdout)["moved"]) == sorted(ids)
    assert len(list((ws / "done").glob("*.json"))) == 3 and not (ws / "archive").exists()
    kept = cli("archive", str(ws), "--older-than", "7d")
    assert kept.returncode == 0 and "0 moved, 3 newer kept" in kept.stdout
    real = cli("archive", str(ws), "--older-than", "0s")
    assert real.returncode == 0 and "3 moved" in real.stdout
    assert not list((ws / "done").glob("*.json"))
    day_folders = list((ws / "archive").iterdir())
    assert len(day_folders) == 1 and oct(day_folders[0].stat().st_mode & 0o777) == "0o755"
    files = sorted(p.stem for p in day_folders[0].glob("*.json"))
    assert files == sorted(ids)
    assert b'"status": "done"' in (day_folders[0] / f"{ids[0]}.json").read_bytes()  # greppable
    shown = cli("show", str(ws), ids[0])
    assert shown.returncode == 0 and f"folder    archive/{day_folders[0].name}/" in shown.stdout
    listed = json.loads(cli("list", str(ws), "archive", "--json").stdout)
    assert sorted(t["id"] for t in listed) == sorted(ids)


def test_compress_writes_one_gzip_json_lines_file_per_day(ws: Path):
    ids = _finished(ws, 2, "failed") + _finished(ws, 2)
    out = cli("archive", str(ws), "--older-than", "0", "--compress", "--folder", "failed")
    assert out.returncode == 0, out.stderr
    (gz,) = (ws / "archive").glob("*.jsonl.gz")
    lines = gzip.decompress(gz.read_bytes()).splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(ids[:2])
    assert len(list((ws / "done").glob("*.json"))) == 2  # --folder failed only
    shown = cli("show", str(ws), ids[0], "--json")
    assert json.loads(shown.stdout)["folder"] == f"archive/{gz.name}"
    assert len(json.loads(cli("list", str(ws), "archive", "--json").stdout)) == 2


def test_an_unreadable_file_is_skipped_with_a_note(ws: Path):
    _finished(ws, 1)
    (ws / "done" / "broken.json").write_text("{not json")
    out = cli("archive", str(ws), "--older-than", "0")
    assert out.returncode == 0 and "1 moved" in out.stdout
    assert "note: skipped done/broken.json" in out.stderr
    assert (ws / "done" / "broken.json").exists()


def test_refusals_a_path_as_id_a_linked_archive_and_a_bad_age(ws: Path, tmp_path: Path):
    ids = _finished(ws, 1)
    bad = cli("show", str(ws), "../done/" + ids[0])
    assert bad.returncode == 2 and "looks like a path" in bad.stderr
    age = cli("archive", str(ws), "--older-than", "soon")
    assert age.returncode == 2 and "--older-than: expected an age" in age.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, ws / "archive")
    linked = cli("archive", str(ws), "--older-than", "0")
    assert linked.returncode == 0  # the move is refused per task, with a note ...
    assert "symbolic link" in linked.stderr and "0 moved" in linked.stdout
    assert list((ws / "done").glob("*.json")) and not list(elsewhere.iterdir())  # ... nothing lost
    listed = cli("list", str(ws), "archive")
    assert listed.returncode == 1 and "symbolic link" in listed.stderr
