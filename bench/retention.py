"""Retention bench (not a test): `stats`, `list done`, `status` and drop->done latency
with N files in done/, before and after archiving them (issue 14 part 3).

    .venv/bin/python bench/retention.py [--files 1000000] [--drops 30] [--keep DIR]

done/ is filled with fast direct writes (one template task, a new id per file, no
fsync); the archive pass is protocol/retention.archive in this process without fsync
(as `dropsited archive` moves them, minus the durability). The latency is of a no-op
exec agent (`/bin/true`-like echo), one task at a time, drop -> done/. Prints a table
and the load average; bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropsited import DropSite, TaskBuilder  # noqa: E402
from dropsited.protocol import retention  # noqa: E402
from dropsited.protocol.store import TaskStore  # noqa: E402

BIN = Path(sys.executable).parent
DROPSITED = str(BIN / "dropsited")


def fill(ws: Path, n: int) -> float:
    """n finished tasks in done/, written directly; seconds taken."""
    ds = DropSite(ws, durable=False)
    task = TaskBuilder("bench", "bench").tag("bench").build()
    ds.submit(task)
    ds.complete(ds.claim("w", task.id), {"ok": True})
    template = (ws / "done" / f"{task.id}.json").read_text()
    start = time.monotonic()
    done = os.open(ws / "done", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(n):
            new_id = f"{i:012x}0000{task.id[16:]}"
            data = template.replace(task.id, new_id).encode()
            fd = os.open(f"{new_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644,
                         dir_fd=done)
            os.write(fd, data)
            os.close(fd)
            if i and i % 100_000 == 0:
                print(f"  {i} files, {time.monotonic() - start:.0f} s", flush=True)
    finally:
        os.close(done)
    return time.monotonic() - start


def timed(*args: str) -> float:
    start = time.monotonic()
    subprocess.run([DROPSITED, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=3600)
    return time.monotonic() - start


def latency(tmp: Path, ws: Path, drops: int) -> float:
    """p50 ms of drop -> done/ for a no-op exec agent, one task at a time."""
    manifest = tmp / "agents.yaml"
    manifest.write_text(json.dumps({"workspace": str(ws), "agents": [
        {"name": "noop", "command": ["/bin/echo", "{}"], "tags": ["lat"]}]}))
    with open(tmp / "daemon.err", "ab") as err:
        proc = subprocess.Popen([DROPSITED, "up", "-c", str(manifest), "--fast"],
                                stdout=subprocess.DEVNULL, stderr=err)
    ds = DropSite(ws, durable=False)
    try:
        deadline = time.monotonic() + 600
        while not (ws / ".dropsited" / "daemon.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        samples = []
        for _ in range(drops):
            task = TaskBuilder("lat", "bench").tag("lat").build()
            start = time.monotonic()
            ds.submit(task)
            while not ds.store.exists("done", f"{task.id}.json"):
                time.sleep(0.001)
            samples.append((time.monotonic() - start) * 1000)
        return statistics.median(samples)
    finally:
        proc.terminate()
        proc.wait(60)


def measure(tmp: Path, ws: Path, drops: int) -> dict[str, float]:
    return {"stats s": timed("stats", str(ws)), "list done s": timed("list", str(ws), "done"),
            "status s": timed("status", str(ws)),
            "drop->done p50 ms": latency(tmp, ws, drops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--drops", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="Use this folder (kept).")
    args = parser.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="dropsite-retention-"))
    ws = tmp / "ws"
    try:
        print(f"filling done/ with {args.files} files in {ws}", flush=True)
        fill_s = fill(ws, args.files)
        print(f"  filled in {fill_s:.0f} s", flush=True)
        before = measure(tmp, ws, args.drops)
        print(f"  before archiving: {before}", flush=True)  # kept if the pass is cut short
        start = time.monotonic()
        report = retention.archive(TaskStore(ws, durable=False), {"done": 0.0})
        archive_s = time.monotonic() - start
        after = measure(tmp, ws, args.drops)
        print(f"\n{args.files} files in done/; archive pass {archive_s:.0f} s "
              f"({len(report.moved)} moved, {len(report.notes)} notes); "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| measure | before | after |\n|---|---:|---:|")
        for key in before:
            print(f"| {key} | {before[key]:.3f} | {after[key]:.3f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
