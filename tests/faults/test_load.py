"""Load: 4 processes submit as fast as they can while the daemon drains with worker agents.

Nothing may be lost. Reports the submit rate, the sustained drain rate and the queue's
peak depth (inbox/ sampled every 200 ms). 5 s of submitting by default; 30 s as a soak test.
Set `DROPSITED_FIGURES=FILE` to append the figures to FILE as one JSON line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chaos.common import assert_all_done_once, quarantine_entries, report, temp_files
from harness import agent, py

SUBMITTERS = 4
SUBMIT = """
import sys, time
from dropsited import DropSite
from dropsited.protocol import TaskBuilder
ws, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ds = DropSite(ws, durable=False, create=False)
ids, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    ids.append(ds.submit(TaskBuilder("load", "loader").max_retries(5).build()))
open(out, "w").write("\\n".join(ids))
"""
WORKER = """
import json, sys
for line in sys.stdin:
    task = json.loads(line)
    sys.stdout.write(json.dumps({"id": task["id"], "status": "done"}) + "\\n")
    sys.stdout.flush()
"""


def run_load(run_daemon, tmp_path: Path, seconds: float) -> dict:
    d = run_daemon([agent("w", py(WORKER), mode="worker", concurrency=2)],
                   "--log-level", "warning")
    inbox = d.ws / "inbox"
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            peak[0] = max(peak[0], sum(1 for _ in os.scandir(inbox)))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    outs = [tmp_path / f"ids{i}.txt" for i in range(SUBMITTERS)]
    procs = [subprocess.Popen([sys.executable, "-c", SUBMIT, str(d.ws), str(seconds), str(out)])
             for out in outs]
    for proc in procs:
        assert proc.wait(timeout=seconds + 60) == 0
    submitted_in = time.monotonic() - started
    ids = {line for out in outs for line in out.read_text().split()}
    total = len(ids)
    # Submitters outrun the drain several times over: the 30 s run leaves a long queue.
    deadline = time.monotonic() + max(60.0, total / 20)
    while sum(1 for _ in os.scandir(d.ws / "done")) < total:
        assert time.monotonic() < deadline, f"not drained: {d.stderr()[-2000:]}"
        assert d.proc.poll() is None, d.stderr()[-3000:]
        time.sleep(0.1)
    drained_in = time.monotonic() - started
    sampling.set()
    sampler.join()
    assert d.stop() == 0
    assert_all_done_once(d.ws, ids)
    assert temp_files(d.ws) == [] and quarantine_entries(d.ws) == []
    figures = {"suite": "load", "submitters": SUBMITTERS, "submit_seconds": seconds,
               "tasks": total, "submit_rate": round(total / submitted_in),
               "drain_seconds": round(drained_in, 1), "sustained_rate": round(total / drained_in),
               "peak_queue_depth": peak[0]}
    report(figures)
    return figures


def test_load_3s(run_daemon, tmp_path: Path) -> None:
    run_load(run_daemon, tmp_path, 3.0)


@pytest.mark.soak
@pytest.mark.timeout(5400)
def test_load_30s(run_daemon, tmp_path: Path) -> None:
    run_load(run_daemon, tmp_path, 30.0)
