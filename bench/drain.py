"""Drain N tasks through an AgentLoop with a no-op handler: dropsited vs DropSite 0.1.0.

Each run gets a fresh workspace in the same file system (a temp dir under
--dir, /tmp by default), is filled with N tasks by the implementation under
test (not timed), then drained by that implementation's own `AgentLoop`
(`run(once=True)`, stdout sent to /dev/null for both). Every configuration
runs --repeat times and the median throughput is reported, with its ratio to
0.1.0 measured in the same invocation.

    .venv/bin/python bench/drain.py                 # N = 1,000 and 20,000
    .venv/bin/python bench/drain.py --quick         # N = 1,000, one repeat
    .venv/bin/python bench/drain.py --sizes 5000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dropsite as legacy  # noqa: E402  (DropSite 0.1.0, the baseline)

import dropsited  # noqa: E402


def _noop(task: object) -> dict:
    return {}


def fill_and_drain_legacy(root: Path, n: int) -> float:
    ds = legacy.DropSite(str(root))
    for i in range(n):
        ds.submit(legacy.TaskBuilder(f"task {i}", "bench").build())
    loop = legacy.AgentLoop(ds, "worker", _noop)
    return _timed(lambda: loop.run(once=True))


def fill_and_drain_dropsited(root: Path, n: int, durable: bool) -> float:
    ds = dropsited.DropSite(root, durable=durable)
    fast = dropsited.DropSite(root, durable=False)  # filling is not what is measured
    for i in range(n):
        fast.submit(dropsited.TaskBuilder(f"task {i}", "bench").build())
    loop = dropsited.AgentLoop(ds, "worker", _noop)
    return _timed(lambda: loop.run(once=True))


def fill_and_drain_floor(root: Path, n: int) -> float:
    """The system calls of dropsited's fast-mode claim + complete and nothing else.

    Rename into active/ under a holder name, read the file, create a temp file
    in done/, unlink the claim, rename the temp: the ceiling any implementation
    of this design can reach on this disk, for reading the other rows.
    """
    for name in ("inbox", "active", "done"):
        (root / name).mkdir()
    body = b"x" * 700  # about the size of a task file
    for i in range(n):
        fd = os.open(root / "inbox" / f"{i:032x}.json", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, body)
        os.close(fd)

    def drain() -> None:
        inbox, active, done = (str(root / name) for name in ("inbox", "active", "done"))
        for i in range(n):
            held = f"{active}/{i:032x}~worker~host~1~2~3.json"
            os.rename(f"{inbox}/{i:032x}.json", held)
            fd = os.open(held, os.O_RDONLY)
            os.fstat(fd)
            os.read(fd, 701)
            os.close(fd)
            tmp = f"{done}/.{i:032x}~host~1~2.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, body)
            os.close(fd)
            os.unlink(held)
            os.rename(tmp, f"{done}/{i:032x}.json")

    return _timed(drain)


def _timed(drain: Callable[[], object]) -> float:
    """Seconds the drain took, with stdout (both loops print per task) at /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        drain()
        return time.perf_counter() - start


def run_one(base: Path, impl: str, mode: str, n: int) -> float:
    """Tasks per second of one drain on a fresh workspace, checked to be complete."""
    root = Path(tempfile.mkdtemp(prefix=f"drain-{impl}-{mode}-", dir=base))
    try:
        if impl == "0.1.0":
            seconds = fill_and_drain_legacy(root, n)
        elif impl == "syscalls":
            seconds = fill_and_drain_floor(root, n)
        else:
            seconds = fill_and_drain_dropsited(root, n, durable=(mode == "durable"))
        done = sum(1 for name in os.listdir(root / "done") if name.endswith(".json"))
        if done != n:
            raise SystemExit(f"{impl} {mode}: {done} of {n} tasks reached done/")
        return n / seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)


CONFIGS = (("0.1.0", "fast"), ("dropsited", "fast"), ("dropsited", "durable"),
           ("syscalls", "floor"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000",
                        help="comma-separated task counts (default 1000,20000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N=1000, one repeat")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the temp workspaces go (same file system for all)")
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    repeat = 1 if args.quick else args.repeat
    base = Path(args.dir)

    rows = []
    for n in sizes:
        # Round-robin over the configurations, so that a change in the load
        # of a shared machine hits every implementation alike.
        rates: dict[tuple[str, str], list[float]] = {config: [] for config in CONFIGS}
        for _ in range(repeat):
            for impl, mode in CONFIGS:
                rates[(impl, mode)].append(run_one(base, impl, mode, n))
        medians = {config: statistics.median(runs) for config, runs in rates.items()}
        for (impl, mode), runs in rates.items():
            print(f"  {impl:9} {mode:7} N={n:<6} runs: " + ", ".join(f"{r:,.0f}" for r in runs),
                  file=sys.stderr, flush=True)
        baseline = medians[("0.1.0", "fast")]
        for (impl, mode), rate in medians.items():
            rows.append((impl, mode if impl != "0.1.0" else "(no fsync)", n, rate, rate / baseline))
    print()

    print(f"{'implementation':<15}{'mode':<12}{'N':>8}{'tasks/s':>12}{'vs 0.1.0':>10}")
    for impl, mode, n, rate, ratio in rows:
        print(f"{impl:<15}{mode:<12}{n:>8,}{rate:>12,.0f}{ratio:>9.2f}x")
    print(f"(median of {repeat}, workspaces under {base}; 'syscalls floor' is the bare "
          "system calls of one fast-mode claim + complete, no Python logic)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
