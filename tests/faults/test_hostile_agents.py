"""Hostile-agents suite (issue 11): agents that print anything or do anything.

One daemon runs an agent per misbehaviour (non-finite JSON, invalid UTF-8, lone
surrogates, 300 MB of stdout, a reply line over the limit, replies twice, replies with
another id, never reads stdin, closes stdout early, forks and leaves the session). Each
task must end within its attempts, in done/ or failed/, in one folder, with the daemon
up and its memory bounded: the peak RSS is sampled while the agents run and reported
(DROPSITED_FIGURES=FILE appends it).
"""

from __future__ import annotations

import json
import time

import psutil
from chaos.common import folders_by_task, report
from harness import agent, py

FLOOD_MB = 300
EXEC = {
    "nan": "import sys; sys.stdin.read(); print('{\"x\": NaN}')",
    "badutf8": "import sys; sys.stdin.read(); sys.stdout.buffer.write(b'\\xff\\xfe{\\x80')",
    "surrogate": "import sys; sys.stdin.read(); print('{\"x\": \"\\\\ud800\"}')",
    "flood": "import sys; sys.stdin.read(); b = b'y' * (1 << 20)\n"
             f"for _ in range({FLOOD_MB}): sys.stdout.buffer.write(b)",
    "closeout": "import os, sys; sys.stdin.read(); os.close(1); import time; time.sleep(0.2)",
    "forker": "import os, sys, time; sys.stdin.read(); print('{\"ok\": 1}', flush=True)\n"
              "if os.fork() == 0:\n    os.setsid(); time.sleep(300)",
}
WORKER_LOOP = "import json, sys\nfor line in sys.stdin:\n    t = json.loads(line)\n"
WORKERS = {
    "twice": WORKER_LOOP + "    r = json.dumps({'id': t['id'], 'status': 'done', 'result': {'for': t['id']}})\n"
                           "    print(r); print(r, flush=True)\n",
    "otherid": WORKER_LOOP + "    print(json.dumps({'id': 'not-' + t['id'], 'status': 'done'}), "
                             "flush=True)\n",
    "deaf": "import time; time.sleep(3600)\n",
    "shut": "import os, sys, time; sys.stdin.readline(); os.close(1); time.sleep(3600)\n",
    "longline": WORKER_LOOP + "    sys.stdout.write('{\"id\": \"' + t['id'] + '\", \"result\": \"' "
                              "+ 'z' * (6 << 20) + '\"}\\n'); sys.stdout.flush()\n",
}
ENDS_IN = {"nan": "failed", "badutf8": "done", "surrogate": "failed", "flood": "failed",
           "closeout": "done", "forker": "done", "twice": "done", "otherid": "failed",
           "deaf": "failed", "shut": "failed", "longline": "failed"}


def test_every_task_ends_within_its_attempts_and_memory_stays_bounded(run_daemon) -> None:
    agents = [agent(name, py(code), tags=[name], timeout=60) for name, code in EXEC.items()]
    agents += [agent(name, py(code), tags=[name], mode="worker", timeout=2, start_seconds=0)
               for name, code in WORKERS.items()]
    d = run_daemon(agents)
    proc = psutil.Process(d.proc.pid)
    base = proc.memory_info().rss
    tasks = {name: [d.drop(name, tags=(name,), max_retries=1) for _ in range(2)]
             for name in ENDS_IN}
    peak, deadline = base, time.monotonic() + 240
    pending = {t for ids in tasks.values() for t in ids}
    while pending and time.monotonic() < deadline:
        peak = max(peak, proc.memory_info().rss)
        pending = {t for t in pending if d.folder_of(t) not in ("done", "failed")}
        time.sleep(0.02)
    assert not pending, {n: [d.folder_of(t) for t in ids] for n, ids in tasks.items()}
    assert d.proc.poll() is None, d.stderr()[-3000:]
    where = folders_by_task(d.ws)
    for name, ids in tasks.items():
        for task_id in ids:
            doc = json.loads((d.ws / ENDS_IN[name] / f"{task_id}.json").read_text())
            assert where[task_id] == [ENDS_IN[name]], (name, where[task_id])
            assert doc["retry_count"] <= doc["max_retries"] + 1, (name, doc["retry_count"])
    twice = [json.loads((d.ws / "done" / f"{t}.json").read_text()) for t in tasks["twice"]]
    assert all(doc["result"] == {"for": doc["id"]} for doc in twice)
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()
    report({"suite": "hostile-agents", "agents": len(ENDS_IN), "tasks": 2 * len(ENDS_IN),
            "stdout_flood_mb": FLOOD_MB * 2, "daemon_rss_start_mb": round(base / 2**20, 1),
            "daemon_rss_peak_mb": round(peak / 2**20, 1)})
    assert peak - base < 100 * 2**20, f"daemon RSS grew by {(peak - base) / 2**20:.0f} MiB"
