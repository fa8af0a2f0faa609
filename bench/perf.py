"""Issue 16 part 2, side by side: pipelined workers, group commit, exec mode, flat cost.

Every configuration runs once per round, rounds interleaved (A B C ... A B C ...);
medians with min-max and the load average of each round are printed, as markdown.

    .venv/bin/python bench/perf.py                        # N = 2,000, C = 2, 3 rounds
    .venv/bin/python bench/perf.py --only flat --inbox 100000 --done-files 1000000
    .venv/bin/python bench/perf.py --only worker,exec --repeat 5 --n 4000

worker: the Python JSON-lines worker (bench/agents/json_worker.py) at `prefetch: 1` and
`prefetch: P`, against the library's in-process drain; exec: the bash agent against
`xargs -P C`; both in fast and durable mode, N staged task files renamed into a warmed
daemon's inbox (daemon_bench.daemon_throughput). flat: the dispatch rate (K tasks
through the pipelined worker, timed from the 100th completion to the 100+K-th) in an
empty workspace, with `--inbox` more tasks waiting in inbox/, and with `--done-files`
files in done/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon_bench as db  # noqa: E402

import dropsited  # noqa: E402

WARM = 100  # completions before the flat measure starts (start-up left out)


def worker(concurrency: int, prefetch: int) -> dict:
    agent = db.worker_agent([sys.executable, str(db.PY_WORKER)], concurrency=concurrency)
    if prefetch != 1:
        agent["prefetch"] = prefetch
    return agent


def one_round(base: Path, parts: set[str], n: int, c: int, p: int) -> dict[str, float]:
    out: dict[str, float] = {}
    if "worker" in parts:
        for durable in (False, True):
            mode = "durable" if durable else "fast"
            out[f"drain {mode}"] = db.library_drain(base, n, durable=durable)
            for prefetch in (1, p):
                out[f"worker {mode} prefetch {prefetch}"] = db.daemon_throughput(
                    base, f"w-{mode}-p{prefetch}", worker(c, prefetch), not durable,
                    db.stage_tasks(base, n))
    if "exec" in parts:
        staged = db.stage_tasks(base, n)
        out["xargs"] = db.xargs_throughput(base, staged, c)
        for durable in (False, True):
            mode = "durable" if durable else "fast"
            out[f"exec {mode}"] = db.daemon_throughput(
                base, f"e-{mode}", db.exec_agent(c), not durable,
                staged if not durable else db.stage_tasks(base, n))
    return out


def fill_inbox(ws: Path, count: int) -> None:
    ds = dropsited.DropSite(ws, durable=False)
    for i in range(count):
        ds.submit(dropsited.TaskBuilder(f"task {i}", "bench").build())


def fill_done(ws: Path, count: int) -> float:
    """`count` files in done/ (empty: only the folder's size matters to dispatch); seconds."""
    dropsited.DropSite(ws, durable=False)
    fd = os.open(ws / "done", os.O_RDONLY | os.O_DIRECTORY)
    start = time.perf_counter()
    try:
        for i in range(count):
            os.close(os.open(f"old-{i:08d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644,
                             dir_fd=fd))
    finally:
        os.close(fd)
    return time.perf_counter() - start


def dispatch_rate(base: Path, label: str, k: int, c: int, p: int, inbox_extra: int,
                  done_files: int, prepared: dict[str, Path]) -> float:
    """Tasks/s from the WARM-th to the WARM+k-th completion of a daemon started on an
    inbox of WARM + k (+ inbox_extra) tasks, with `done_files` files in done/. A big
    workspace is made once and reused by the next rounds (its new files removed)."""
    run = db.Run(base, label)
    key = f"{inbox_extra}-{done_files}"
    if key in prepared:
        prepared.pop(key).rename(run.ws)
    elif done_files:
        db.progress(f"  {done_files:,} files in done/: {fill_done(run.ws, done_files):.0f} s")
    fill_inbox(run.ws, WARM + k + inbox_extra)
    os.sync()  # the fill's dirty pages written now, not during the timed window
    watcher = db.DoneWatcher(run.ws / "done")
    before = len(watcher.seen)
    start = at_start = None
    try:
        run.start_daemon([worker(c, p)], fast=True)
        deadline = time.perf_counter() + 600
        while len(watcher.seen) - before < WARM + k:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{label}: only {len(watcher.seen) - before} done")
            watcher._read(1.0)
            if start is None and len(watcher.seen) - before >= WARM:
                start, at_start = time.perf_counter(), len(watcher.seen) - before
        end, got = time.perf_counter(), len(watcher.seen) - before
        run.check_alive()
    finally:
        watcher.close()
        run.stop()
    if inbox_extra or done_files:
        for folder in ("inbox", "active", "done"):
            for name in os.listdir(run.ws / folder):
                if not name.startswith("old-"):
                    os.unlink(run.ws / folder / name)
        prepared[key] = base / f"prepared-{label}"
        run.ws.rename(prepared[key])
    return (got - at_start) / (end - start)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="tasks per throughput run")
    parser.add_argument("--c", type=int, default=os.cpu_count() or 2, help="concurrency")
    parser.add_argument("--prefetch", type=int, default=8, help="P of the pipelined rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="worker,exec,flat")
    parser.add_argument("--k", type=int, default=2000, help="tasks timed by the flat measure")
    parser.add_argument("--inbox", type=int, default=100_000, help="extra tasks in inbox/")
    parser.add_argument("--done-files", type=int, default=1_000_000, help="files in done/")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    signal.signal(signal.SIGTERM, db._sigterm)
    base = Path(tempfile.mkdtemp(prefix="perf-bench-", dir=args.dir))
    samples: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    prepared: dict[str, Path] = {}
    began = time.perf_counter()
    try:
        for r in range(args.repeat):
            db.progress(f"round {r + 1}/{args.repeat}, load {os.getloadavg()[0]:.1f}")
            results = one_round(base, parts, args.n, args.c, args.prefetch)
            if "flat" in parts:
                for label, extra, done in (("empty", 0, 0), ("inbox", args.inbox, 0),
                                           ("done", 0, args.done_files)):
                    results[f"flat {label}"] = dispatch_rate(
                        base, f"flat-{label}", args.k, args.c, args.prefetch, extra, done,
                        prepared)
            for key, value in results.items():
                samples.setdefault(key, []).append(value)
                db.progress(f"  {key}: {value:,.0f} tasks/s")
            loads.append(os.getloadavg()[0])
    finally:
        db.stop_all()
        shutil.rmtree(base, ignore_errors=True)
    report(samples, args, loads, time.perf_counter() - began)
    return 0


def report(s: dict[str, list[float]], args: argparse.Namespace, loads: list[float],
           seconds: float) -> None:
    med = {k: statistics.median(v) for k, v in s.items()}
    print(f"## bench/perf.py: N = {args.n:,}, C = {args.c}, P = {args.prefetch}, "
          f"{args.repeat} interleaved rounds, {seconds:.0f} s")
    print("\nload average (1 min) at the start and after each round: "
          + ", ".join(f"{x:.1f}" for x in loads) + "\n")
    if "drain fast" in s:
        print("| mode | in-process drain | worker prefetch 1 | ratio | worker prefetch "
              f"{args.prefetch} | ratio |\n|---|---:|---:|---:|---:|---:|")
        for mode in ("fast", "durable"):
            d, w1, wp = (med[f"drain {mode}"], med[f"worker {mode} prefetch 1"],
                         med[f"worker {mode} prefetch {args.prefetch}"])
            print(f"| {mode} | {summary(s[f'drain {mode}'])} | "
                  f"{summary(s[f'worker {mode} prefetch 1'])} | {w1 / d:.2f}x | "
                  f"{summary(s[f'worker {mode} prefetch {args.prefetch}'])} | {wp / d:.2f}x |")
        pf, pd = (med[f"worker fast prefetch {args.prefetch}"],
                  med[f"worker durable prefetch {args.prefetch}"])
        print(f"\nworker durable / fast at prefetch {args.prefetch}: {pd / pf:.2f}x; "
              f"at prefetch 1: {med['worker durable prefetch 1'] / med['worker fast prefetch 1']:.2f}x")
    if "xargs" in s:
        x = med["xargs"]
        print("\n| exec | tasks/s | vs xargs |\n|---|---:|---:|")
        print(f"| xargs -P {args.c} | {summary(s['xargs'])} | 1.00x |")
        for mode in ("fast", "durable"):
            print(f"| dropsited {mode} | {summary(s[f'exec {mode}'])} | "
                  f"{med[f'exec {mode}'] / x:.2f}x |")
        print(f"\nexec durable / fast: {med['exec durable'] / med['exec fast']:.2f}x")
    if "flat empty" in s:
        e = med["flat empty"]
        print(f"\n| dispatch (K = {args.k:,}, fast, worker C = {args.c} prefetch "
              f"{args.prefetch}) | tasks/s | vs empty |\n|---|---:|---:|")
        for key, label in (("flat empty", "empty workspace"),
                           ("flat inbox", f"{args.inbox:,} more tasks in inbox/"),
                           ("flat done", f"{args.done_files:,} files in done/")):
            print(f"| {label} | {summary(s[key])} | {med[key] / e:.2f}x |")


if __name__ == "__main__":
    raise SystemExit(main())
