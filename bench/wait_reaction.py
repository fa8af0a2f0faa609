"""How soon `wait` returns after a task reaches done/: file-system events against polling.

A waiter process (the library's `protocol.waiting.wait_for`, events on or off) waits
for one task at a time; this process completes the task at a random moment
0.1-0.3 s after the waiter said it is waiting. Reaction = the waiter's return
(CLOCK_MONOTONIC, shared by all processes of the machine) minus the moment just
before `complete()` started, so the move itself (~0.1 ms, no fsync) is included.

    .venv/bin/python bench/wait_reaction.py            # 40 rounds per mode
    .venv/bin/python bench/wait_reaction.py --rounds 200
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropsited import DropSite, TaskBuilder  # noqa: E402
from dropsited.protocol import waiting  # noqa: E402

WAITER = textwrap.dedent("""
    import sys, time
    from dropsited import DropSite
    from dropsited.protocol.waiting import wait_for
    ds = DropSite(sys.argv[1], durable=False, create=False)
    use_events = sys.argv[2] == "events"
    for line in sys.stdin:
        print("waiting", flush=True)
        wait_for(ds, [line.strip()], timeout=30, use_events=use_events)
        print(repr(time.monotonic()), flush=True)
""")


def measure(ws: Path, mode: str, rounds: int) -> list[float]:
    """Reaction times in milliseconds, one per round."""
    ds = DropSite(ws, durable=False)
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(ws), mode], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    times = []
    try:
        for _ in range(rounds):
            task_id = ds.submit(TaskBuilder("bench", "bench").build())
            task = ds.claim("bench", task_id)
            waiter.stdin.write(task_id + "\n")
            waiter.stdin.flush()
            assert waiter.stdout.readline().strip() == "waiting"
            time.sleep(random.uniform(0.1, 0.3))
            before = time.monotonic()
            ds.complete(task, {})
            woke = float(waiter.stdout.readline())
            times.append((woke - before) * 1000)
    finally:
        waiter.stdin.close()
        waiter.wait(timeout=30)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print("| mode | rounds | p50 ms | p90 ms | max ms | look interval |\n|---|---:|---:|---:|---:|---|")
    for mode, interval in (("events", f"events + {waiting.SAFETY_INTERVAL:g} s safety poll"),
                           ("poll", f"poll every {waiting.POLL_INTERVAL * 1000:g} ms")):
        with tempfile.TemporaryDirectory(prefix="wait-bench-") as root:
            times = measure(Path(root) / "ws", mode, args.rounds)
        print(f"| {mode} | {len(times)} | {statistics.median(times):.2f} | "
              f"{percentile(times, 0.9):.2f} | {max(times):.2f} | {interval} |")


if __name__ == "__main__":
    main()
