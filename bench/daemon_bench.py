"""The daemon measured side by side: latency, exec and worker throughput, idle cost.

Every daemon is the real binary (`.venv/bin/dropsited up -c MANIFEST [--fast]`)
in a subprocess, on a fresh workspace under one temp dir (same file system
for everything). The agents it runs are in bench/agents/.

1. drop -> done latency, one task at a time: an exec bash agent, a Python
   and a Node.js worker agent (dropsited fast and durable), and 0.1.0's
   `AgentLoop` (default poll 1.0 s) in a subprocess. Latency is the wall
   time from just before the `submit()` call to the moment inotify reports
   `done/<id>.json` (IN_MOVED_TO/IN_CREATE read in this process). The
   history-based figure (`done` entry time minus `inbox` entry time) is
   printed beside it as a check.
2. exec throughput: N task files through the daemon with an exec agent at
   concurrency C, against `xargs -P C` running the same script on copies of
   the same files (`sh -c 'exec AGENT < "$0" > "$0.out"'`).
3. worker throughput: N task files through a Python JSON-lines worker, and its
   ratio to the library's in-process drain (`dropsited.AgentLoop`, no-op
   handler, `once=True`) on a same-size workspace.
4. idle: a daemon with 10 worker + 10 service agents; daemon CPU over a
   window and RSS (daemon alone, whole process tree).

Throughput runs move pre-written task files into inbox/ with one rename each
(a few ms for all of them) once the daemon is up and warmed, and time until
the last one is in done/. Each throughput configuration runs --repeat times,
interleaved with its baseline; medians are printed.

    .venv/bin/python bench/daemon_bench.py            # full run, a few minutes
    .venv/bin/python bench/daemon_bench.py --quick    # about a minute
    .venv/bin/python bench/daemon_bench.py --only none --baseline ../old/.venv/bin/dropsited
                                                      # part 5 only: this tree vs another
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dropsite as legacy  # noqa: E402  (DropSite 0.1.0, the reference implementation)
import psutil  # noqa: E402

import dropsited  # noqa: E402
from dropsited.protocol.task import parse_iso  # noqa: E402

AGENTS = Path(__file__).resolve().parent / "agents"
EXEC_AGENT = AGENTS / "echo_exec.sh"
PY_WORKER = AGENTS / "json_worker.py"
NODE_WORKER = AGENTS / "json_worker.js"
LEGACY_LOOP = AGENTS / "legacy_agent_loop.py"
IDLE_SERVICE = AGENTS / "idle_service.sh"
DROPSITED = [str(Path(sys.executable).parent / "dropsited")]  # --dropsited replaces it
WAIT_LIMIT = 60.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- watching done/ ---------------------------------------------------------------
class DoneWatcher:
    """Names that appeared in a folder, read from inotify (Linux) or by listing (elsewhere)."""

    IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = 0x80, 0x100, 0x4000
    HEADER = struct.Struct("iIII")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[str] = set()
        self.fd = self._inotify(folder)
        self.method = "inotify" if self.fd is not None else "listdir every 1 ms"
        self._rescan()

    def _inotify(self, folder: Path) -> int | None:
        if not sys.platform.startswith("linux"):
            return None
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(folder), self.IN_MOVED_TO | self.IN_CREATE) < 0:
            os.close(fd)
            return None
        return fd

    def _rescan(self) -> None:
        self.seen.update(n for n in os.listdir(self.folder) if self._is_task(n))

    @staticmethod
    def _is_task(name: str) -> bool:
        return name.endswith(".json") and not name.startswith(".")

    def _read(self, timeout: float) -> None:
        if self.fd is None:
            time.sleep(min(timeout, 0.001))
            self._rescan()
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        buf = os.read(self.fd, 1 << 20)
        offset = 0
        while offset < len(buf):
            _, mask, _, length = self.HEADER.unpack_from(buf, offset)
            start = offset + self.HEADER.size
            name = buf[start:start + length].rstrip(b"\0").decode()
            offset = start + length
            if mask & self.IN_Q_OVERFLOW:
                self._rescan()
            elif self._is_task(name):
                self.seen.add(name)

    def wait_for(self, name: str, timeout: float = WAIT_LIMIT) -> float:
        """perf_counter() at the moment `name` is known to be in the folder."""
        deadline = time.perf_counter() + timeout
        while name not in self.seen:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{name} did not reach {self.folder} within {timeout:g}s")
            self._read(left)
        return time.perf_counter()

    def wait_all(self, names: Iterable[str], timeout: float = WAIT_LIMIT) -> float:
        names = set(names)
        deadline = time.perf_counter() + timeout
        while not names <= self.seen:
            left = deadline - time.perf_counter()
            if left <= 0:
                missing = len(names - self.seen)
                raise TimeoutError(f"{missing} of {len(names)} tasks missing from {self.folder}")
            self._read(left)
        return time.perf_counter()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- processes ---------------------------------------------------------------------
LIVE: list[subprocess.Popen] = []


def spawn(argv: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A child in its own session (Ctrl-C reaches only us; we stop it ourselves)."""
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    LIVE.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM (a daemon drains and stops its agents), then SIGKILL to its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc in LIVE:
        LIVE.remove(proc)


def stop_all() -> None:
    for proc in list(LIVE):
        stop(proc, grace=5.0)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# -- workspaces and daemons ----------------------------------------------------------
class Run:
    """A fresh directory with a workspace, a manifest and (once started) a daemon."""

    counter = 0

    def __init__(self, base: Path, label: str) -> None:
        Run.counter += 1
        self.dir = base / f"{Run.counter:02d}-{label}"
        self.dir.mkdir()
        self.ws = self.dir / "ws"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "daemon.log"

    def start_daemon(self, agents: list[dict], fast: bool) -> subprocess.Popen:
        manifest = self.dir / "agents.yaml"
        manifest.write_text(json.dumps({"workspace": "ws", "agents": agents}, indent=2))
        dropsited.DropSite(self.ws, durable=False)  # created here so done/ can be watched
        argv = [*DROPSITED, "up", "-c", str(manifest), "--log-level", "warning"]
        self.proc = spawn(argv + (["--fast"] if fast else []), self.log, cwd=self.dir)
        return self.proc

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"daemon exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def submit_and_wait(ds: dropsited.DropSite, watcher: DoneWatcher, count: int) -> None:
    """Warm-up: `count` tasks through, one at a time (also proves the agent is up)."""
    for i in range(count):
        task = dropsited.TaskBuilder(f"warm-up {i}", "bench").build()
        ds.submit(task)
        watcher.wait_for(f"{task.id}.json")


def stage_tasks(base: Path, n: int) -> Path:
    """N task files written by the library into a scratch workspace; returns its inbox."""
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=base))
    ds = dropsited.DropSite(stage, durable=False)
    for i in range(n):
        ds.submit(dropsited.TaskBuilder(f"task {i}", "bench").build())
    return stage / "inbox"


def task_files(inbox: Path) -> list[str]:
    return sorted(n for n in os.listdir(inbox) if n.endswith(".json") and not n.startswith("."))


# -- 1. latency ------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def history_latency(path: Path) -> float | None:
    """`done` entry time minus the last `inbox` entry time, from the task file."""
    history = json.loads(path.read_bytes()).get("history", [])
    inbox = [parse_iso(e["at"]) for e in history if e.get("status") == "inbox"]
    done = [parse_iso(e["at"]) for e in history if e.get("status") == "done"]
    if not inbox or not done or inbox[0] is None or done[-1] is None:
        return None
    return done[-1] - inbox[0]


def measure_drops(submit: Callable[[], str], watcher: DoneWatcher, n: int,
                  think: Callable[[], float], budget: float = float("inf")) -> list[float]:
    """Up to `n` drops one at a time; stops early once `budget` seconds have passed
    and at least min(n, 10) drops were made (a slow configuration stays bounded)."""
    latencies: list[float] = []
    began = time.perf_counter()
    while len(latencies) < n:
        if len(latencies) >= min(n, 10) and time.perf_counter() - began > budget:
            break
        pause = think()
        if pause:
            time.sleep(pause)
        start = time.perf_counter()
        task_id = submit()
        latencies.append(watcher.wait_for(f"{task_id}.json") - start)
    return latencies


def daemon_latency(base: Path, label: str, agent: dict, fast: bool, n: int,
                   budget: float) -> dict:
    run = Run(base, label)
    try:
        run.start_daemon([agent], fast)
        ds = dropsited.DropSite(run.ws, durable=not fast)
        watcher = DoneWatcher(run.ws / "done")
        submit_and_wait(ds, watcher, 5)
        run.check_alive()
        ids: list[str] = []

        def submit() -> str:
            ids.append(ds.submit(dropsited.TaskBuilder("latency", "bench").build()))
            return ids[-1]

        lat = measure_drops(submit, watcher, n, lambda: 0.0, budget)
        hist = [h for h in (history_latency(run.ws / "done" / f"{i}.json") for i in ids) if h]
        watcher.close()
        return {"lat": lat, "hist": hist}
    finally:
        run.stop()


def legacy_latency(base: Path, n: int) -> dict:
    """0.1.0's AgentLoop (poll 1.0 s) in a subprocess; drops at random phases of its poll."""
    run = Run(base, "legacy-agentloop")
    ws = run.ws
    ds = legacy.DropSite(str(ws))
    proc = spawn([sys.executable, str(LEGACY_LOOP), str(ws)], run.dir / "agent.log")
    try:
        watcher = DoneWatcher(ws / "done")
        ids: list[str] = []

        def submit() -> str:
            ids.append(ds.submit(legacy.TaskBuilder("latency", "bench").build()))
            return ids[-1]

        measure_drops(submit, watcher, 1, lambda: 0.0)  # warm-up: the loop is polling
        ids.clear()
        rng = random.Random(1)
        lat = measure_drops(submit, watcher, n, lambda: rng.uniform(0.0, 1.0))
        hist = [h for h in (history_latency(ws / "done" / f"{i}.json") for i in ids) if h]
        watcher.close()
        return {"lat": lat, "hist": hist}
    finally:
        stop(proc)


def exec_agent(concurrency: int = 1) -> dict:
    return {"name": "bash-exec", "mode": "exec", "command": [str(EXEC_AGENT)],
            "concurrency": concurrency}


def worker_agent(command: list[str], name: str = "py-worker", concurrency: int = 1) -> dict:
    return {"name": name, "mode": "worker", "command": command, "concurrency": concurrency}


def bench_latency(base: Path, n: int, legacy_n: int, budget: float) -> list[tuple]:
    configs = [
        ("exec bash agent", "fast", exec_agent(), True),
        ("exec bash agent", "durable", exec_agent(), False),
        ("worker, Python", "fast", worker_agent([sys.executable, str(PY_WORKER)]), True),
        ("worker, Python", "durable", worker_agent([sys.executable, str(PY_WORKER)]), False),
    ]
    node = shutil.which("node")
    if node:
        configs.append(("worker, Node.js", "fast",
                        worker_agent([node, str(NODE_WORKER)], "node-worker"), True))
    rows = []
    for name, mode, agent, fast in configs:
        progress(f"latency: {name} ({mode}), up to {n} drops or {budget:g} s")
        data = daemon_latency(base, f"lat-{agent['name']}-{mode}", agent, fast, n, budget)
        rows.append((name, mode, len(data["lat"]), data))
    progress(f"latency: 0.1.0 AgentLoop, {legacy_n} drops (about {legacy_n} s)")
    rows.append(("0.1.0 AgentLoop (poll 1.0 s)", "(no fsync)", legacy_n,
                 legacy_latency(base, legacy_n)))
    return rows


def print_latency(rows: list[tuple], method: str, n_max: int, budget: float) -> None:
    print("\n### 1. drop -> done latency (one task at a time)\n")
    print("| agent | mode | drops | p50 ms | p99 ms | p50 ms (history) | target |")
    print("|---|---|---:|---:|---:|---:|---|")
    targets = {"exec bash agent": 20.0, "worker, Python": 5.0, "worker, Node.js": 5.0}
    for name, mode, n, data in rows:
        p50 = percentile(data["lat"], 50) * 1000
        p99 = percentile(data["lat"], 99) * 1000
        hist = percentile(data["hist"], 50) * 1000 if data["hist"] else float("nan")
        target = targets.get(name)
        verdict = "" if target is None else f"p50 <= {target:g} ms: {'met' if p50 <= target else 'MISSED'}"
        print(f"| {name} | {mode} | {n} | {p50:.1f} | {p99:.1f} | {hist:.1f} | {verdict} |")
    print(f"\nLatency = submit() start -> `done/<id>.json` reported by {method} in the bench "
          "process; 'history' = the file's `done` entry time minus its `inbox` entry time. "
          "0.1.0 drops wait a random 0-1 s first, so they land at random phases of its poll.")


# -- 2 and 3. throughput -------------------------------------------------------------------
def daemon_throughput(base: Path, label: str, agent: dict, fast: bool, inbox: Path) -> float:
    """Tasks/s of N staged files renamed into a running, warmed daemon's inbox."""
    run = Run(base, label)
    try:
        run.start_daemon([agent], fast)
        ds = dropsited.DropSite(run.ws, durable=not fast)
        watcher = DoneWatcher(run.ws / "done")
        submit_and_wait(ds, watcher, 3)
        run.check_alive()
        names = task_files(inbox)
        target = run.ws / "inbox"
        start = time.perf_counter()
        for name in names:
            os.rename(inbox / name, target / name)
        try:
            end = watcher.wait_all(names, timeout=300)
        finally:
            watcher.close()
        run.check_alive()
        return len(names) / (end - start)
    finally:
        run.stop()


def xargs_throughput(base: Path, inbox: Path, concurrency: int) -> float:
    """`xargs -P C` running the same agent script on copies of the same task files."""
    work = Path(tempfile.mkdtemp(prefix="xargs-", dir=base))
    names = task_files(inbox)
    for name in names:
        shutil.copyfile(inbox / name, work / name)
    cmd = (f"find . -name '*.json' -print0 | xargs -0 -P {concurrency} -n 1 "
           f"sh -c 'exec {EXEC_AGENT} < \"$0\" > \"$0.out\"'")
    start = time.perf_counter()
    subprocess.run(cmd, shell=True, cwd=work, check=True)
    seconds = time.perf_counter() - start
    outs = sum(1 for n in os.listdir(work) if n.endswith(".out"))
    if outs != len(names):
        raise SystemExit(f"xargs: {outs} of {len(names)} outputs")
    shutil.rmtree(work, ignore_errors=True)
    return len(names) / seconds


def library_drain(base: Path, n: int, durable: bool) -> float:
    """dropsited.AgentLoop in this process, no-op handler, once=True (as bench/drain.py)."""
    root = Path(tempfile.mkdtemp(prefix="drain-", dir=base))
    fill = dropsited.DropSite(root, durable=False)
    for i in range(n):
        fill.submit(dropsited.TaskBuilder(f"task {i}", "bench").build())
    ds = dropsited.DropSite(root, durable=durable)
    loop = dropsited.AgentLoop(ds, "drain", lambda task: {}, verbose=False)
    start = time.perf_counter()
    loop.run(once=True)
    seconds = time.perf_counter() - start
    done = len(task_files(root / "done"))
    if done != n:
        raise SystemExit(f"in-process drain: {done} of {n} done")
    shutil.rmtree(root, ignore_errors=True)
    return n / seconds


def median_of(repeat: int, runs: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run `runs` (one interleaved round of every configuration) `repeat` times; medians."""
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        for key, value in runs().items():
            samples.setdefault(key, []).append(value)
    for key, values in samples.items():
        progress(f"  {key}: " + ", ".join(f"{v:,.0f}" for v in values) + " tasks/s")
    return {key: statistics.median(values) for key, values in samples.items()}


def bench_exec(base: Path, n: int, repeat: int, levels: list[int]) -> dict[str, float]:
    def one_round() -> dict[str, float]:
        out = {}
        for c in levels:
            inbox = stage_tasks(base, n)
            out[f"xargs C={c}"] = xargs_throughput(base, inbox, c)
            out[f"daemon fast C={c}"] = daemon_throughput(
                base, f"exec-fast-c{c}", exec_agent(c), True, inbox)
            out[f"daemon durable C={c}"] = daemon_throughput(
                base, f"exec-durable-c{c}", exec_agent(c), False, stage_tasks(base, n))
        return out

    progress(f"exec throughput: N={n}, C in {levels}, {repeat} round(s)")
    return median_of(repeat, one_round)


def print_exec(result: dict[str, float], n: int, levels: list[int], repeat: int) -> None:
    print(f"\n### 2. exec throughput (N = {n:,} task files, bash agent, median of {repeat})\n")
    print("| C | xargs -P C tasks/s | daemon fast tasks/s | ratio | daemon durable tasks/s | ratio | target |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for c in levels:
        x, f, d = result[f"xargs C={c}"], result[f"daemon fast C={c}"], result[f"daemon durable C={c}"]
        verdict = "met" if f / x >= 0.7 else "MISSED"
        print(f"| {c} | {x:,.0f} | {f:,.0f} | {f / x:.2f}x | {d:,.0f} | {d / x:.2f}x | "
              f">= 0.7x (fast): {verdict} |")
    print("\nxargs: `find . -name '*.json' -print0 | xargs -0 -P C -n 1 sh -c "
          "'exec bench/agents/echo_exec.sh < \"$0\" > \"$0.out\"'` on copies of the task files "
          "the fast daemon then ran; the durable daemon ran a fresh set of the same size.")


def bench_worker(base: Path, n: int, repeat: int, levels: list[int]) -> dict[str, float]:
    def one_round() -> dict[str, float]:
        out = {}
        for fast in (True, False):
            mode = "fast" if fast else "durable"
            out[f"drain {mode}"] = library_drain(base, n, durable=not fast)
            for c in levels:
                agent = worker_agent([sys.executable, str(PY_WORKER)], concurrency=c)
                out[f"worker {mode} C={c}"] = daemon_throughput(
                    base, f"worker-{mode}-c{c}", agent, fast, stage_tasks(base, n))
        return out

    progress(f"worker throughput: N={n}, C in {levels}, {repeat} round(s)")
    return median_of(repeat, one_round)


def print_worker(result: dict[str, float], n: int, levels: list[int], repeat: int) -> None:
    print(f"\n### 3. worker throughput (N = {n:,}, Python JSON-lines worker, median of {repeat})\n")
    print("| mode | in-process drain tasks/s | " +
          " | ".join(f"worker C={c} tasks/s | ratio" for c in levels) + " |")
    print("|---|---:|" + "---:|---:|" * len(levels))
    for mode in ("fast", "durable"):
        drain = result[f"drain {mode}"]
        cells = []
        for c in levels:
            w = result[f"worker {mode} C={c}"]
            cells.append(f"{w:,.0f} | {w / drain:.2f}x")
        print(f"| {mode} | {drain:,.0f} | " + " | ".join(cells) + " |")
    print("\nin-process drain: `dropsited.AgentLoop(ds, 'drain', lambda t: {}, verbose=False)"
          ".run(once=True)` in the bench process on a workspace of the same size.")


# -- 4. idle ---------------------------------------------------------------------------------
def wait_all_running(ws: Path, names: list[str], proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        states = []
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                record = json.loads((ws / "agents" / f"{name}.json").read_bytes())
                states.append(record.get("state") == "RUNNING" and all(
                    i.get("state") == "RUNNING" for i in record.get("instances", [])))
        if len(states) == len(names) and all(states):
            return
        time.sleep(0.1)
    raise SystemExit("idle agents did not all reach RUNNING")


def tree_of(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


def bench_idle(base: Path, window: float) -> dict:
    run = Run(base, "idle")
    agents = [worker_agent([sys.executable, str(PY_WORKER)], f"idle-worker-{i}") for i in range(10)]
    agents += [{"name": f"idle-service-{i}", "mode": "service", "command": [str(IDLE_SERVICE)]}
               for i in range(10)]
    try:
        proc = run.start_daemon(agents, fast=False)
        wait_all_running(run.ws, [a["name"] for a in agents], proc)
        time.sleep(2.0)  # let start-up work (status writes, imports) settle
        daemon = psutil.Process(proc.pid)
        progress(f"idle: 20 agents up, measuring CPU over {window:g} s")
        tree = tree_of(daemon)
        before = {p.pid: sum(p.cpu_times()[:2]) for p in tree}
        wall = time.perf_counter()
        time.sleep(window)
        wall = time.perf_counter() - wall
        tree_after = {p.pid: p for p in tree_of(daemon)}
        cpu_daemon = sum(daemon.cpu_times()[:2]) - before[daemon.pid]
        cpu_tree = sum(sum(p.cpu_times()[:2]) - before.get(p.pid, 0.0)
                       for p in tree_after.values() if p.is_running())
        return {
            "agents": len(agents), "window": wall,
            "cpu_daemon": 100 * cpu_daemon / wall, "cpu_tree": 100 * cpu_tree / wall,
            "rss_daemon": daemon.memory_info().rss,
            "rss_tree": sum(p.memory_info().rss for p in tree_after.values()),
            "processes": len(tree_after), "threads": daemon.num_threads(),
        }
    finally:
        run.stop()


def print_idle(r: dict) -> None:
    mb = 1024 * 1024
    print(f"\n### 4. idle daemon ({r['agents']} agents: 10 Python workers + 10 sleeping services)\n")
    print("| measure | value | target |")
    print("|---|---:|---|")
    print(f"| daemon CPU over {r['window']:.1f} s | {r['cpu_daemon']:.2f} % | < 1 %: "
          f"{'met' if r['cpu_daemon'] < 1 else 'MISSED'} |")
    print(f"| whole tree CPU | {r['cpu_tree']:.2f} % | |")
    print(f"| daemon RSS | {r['rss_daemon'] / mb:.1f} MB | < 60 MB: "
          f"{'met' if r['rss_daemon'] < 60 * mb else 'MISSED'} |")
    print(f"| whole tree RSS ({r['processes']} processes) | {r['rss_tree'] / mb:.1f} MB | |")
    print(f"| daemon threads | {r['threads']} | |")


# -- main ---------------------------------------------------------------------------------------


# -- 5. this tree against a baseline daemon ----------------------------------------------------
def bench_baseline(base: Path, baseline: list[str], n_exec: int, n_worker: int, repeat: int,
                   c: int) -> dict[str, dict[str, list[float]]]:
    """The same configurations through this tree's daemon and `baseline`, interleaved
    (A B A B ...) so load changes hit both alike: throughput and drop -> done p50."""
    this = list(DROPSITED)
    samples: dict[str, dict[str, list[float]]] = {}
    configs = [
        ("exec fast tasks/s", lambda lab: daemon_throughput(
            base, lab, exec_agent(c), True, stage_tasks(base, n_exec))),
        ("exec durable tasks/s", lambda lab: daemon_throughput(
            base, lab, exec_agent(c), False, stage_tasks(base, n_exec))),
        ("worker fast tasks/s", lambda lab: daemon_throughput(
            base, lab, worker_agent([sys.executable, str(PY_WORKER)], concurrency=c), True,
            stage_tasks(base, n_worker))),
        ("worker durable tasks/s", lambda lab: daemon_throughput(
            base, lab, worker_agent([sys.executable, str(PY_WORKER)], concurrency=c), False,
            stage_tasks(base, n_worker))),
        ("exec latency p50 ms", lambda lab: 1000 * statistics.median(daemon_latency(
            base, lab, exec_agent(), True, 50, 5.0)["lat"])),
        ("worker latency p50 ms", lambda lab: 1000 * statistics.median(daemon_latency(
            base, lab, worker_agent([sys.executable, str(PY_WORKER)]), True, 100, 5.0)["lat"])),
    ]
    try:
        for r in range(repeat):
            for name, measure in configs:
                for who, command in (("this tree", this), ("baseline", baseline)):
                    DROPSITED[:] = command
                    label = f"base-{r}-{who.replace(' ', '')}-{len(samples.get(name, {}))}"
                    value = measure(label + name.split()[0] + name.split()[1])
                    samples.setdefault(name, {}).setdefault(who, []).append(value)
                    progress(f"  {name}, {who}: {value:,.1f}")
    finally:
        DROPSITED[:] = this
    return samples


def print_baseline(samples: dict[str, dict[str, list[float]]], baseline: list[str],
                   c: int, repeat: int) -> None:
    print(f"\n### 5. this tree against `{' '.join(baseline)}` (C = {c}, interleaved, "
          f"median of {repeat}, min-max)\n")
    print("| measure | this tree | baseline | ratio (this / baseline) |")
    print("|---|---:|---:|---:|")
    for name, by in samples.items():
        a, b = by["this tree"], by["baseline"]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {ma:,.1f} ({min(a):,.1f}-{max(a):,.1f}) | "
              f"{mb:,.1f} ({min(b):,.1f}-{max(b):,.1f}) | {ma / mb:.2f}x |")
    print("\nFor tasks/s higher is better; for latency lower is better.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer tasks, one round")
    parser.add_argument("--latency-n", type=int, default=None, help="drops per agent (200; quick 50)")
    parser.add_argument("--latency-budget", type=float, default=None,
                        help="seconds per daemon latency row, after 10 drops (30; quick 4)")
    parser.add_argument("--legacy-n", type=int, default=None, help="drops for 0.1.0 (100; quick 10)")
    parser.add_argument("--exec-n", type=int, default=None, help="exec tasks (1000; quick 300)")
    parser.add_argument("--worker-n", type=int, default=None, help="worker tasks (2000; quick 500)")
    parser.add_argument("--repeat", type=int, default=None, help="throughput rounds (3; quick 1)")
    parser.add_argument("--idle-window", type=float, default=None, help="seconds (10; quick 5)")
    parser.add_argument("--only", default="latency,exec,worker,idle",
                        help="comma-separated parts to run")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the temp workspaces go (one file system for all)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, workspaces)")
    parser.add_argument("--dropsited", default=None, metavar="COMMAND",
                        help="the daemon command to measure (default: .venv/bin/dropsited), "
                             "e.g. a patched tree's; split on spaces")
    parser.add_argument("--baseline", default=None, metavar="COMMAND",
                        help="also run part 5: the same throughput and latency through this "
                             "daemon command (e.g. an older tree's .venv/bin/dropsited), "
                             "interleaved with this tree's, and print the ratios")
    args = parser.parse_args(argv)
    q = args.quick
    latency_n = args.latency_n or (50 if q else 200)
    budget = args.latency_budget or (4.0 if q else 30.0)
    legacy_n = args.legacy_n or (10 if q else 100)
    exec_n = args.exec_n or (300 if q else 1000)
    worker_n = args.worker_n or (500 if q else 2000)
    repeat = args.repeat or (1 if q else 3)
    window = args.idle_window or (5.0 if q else 10.0)
    parts = set(args.only.split(","))
    if args.dropsited:
        # paths made absolute: the daemon runs in its own directory
        DROPSITED[:] = [os.path.abspath(t) if os.path.exists(t) else t
                        for t in args.dropsited.split()]
    levels = sorted({4, os.cpu_count() or 1})
    baseline = [os.path.abspath(t) if os.path.exists(t) else t
                for t in args.baseline.split()] if args.baseline else []

    signal.signal(signal.SIGTERM, _sigterm)
    base = Path(tempfile.mkdtemp(prefix="daemon-bench-", dir=args.dir))
    began = time.perf_counter()
    try:
        results = {}
        if "latency" in parts:
            results["latency"] = bench_latency(base, latency_n, legacy_n, budget)
        if "exec" in parts:
            results["exec"] = bench_exec(base, exec_n, repeat, levels)
        if "worker" in parts:
            results["worker"] = bench_worker(base, worker_n, repeat, levels)
        if "idle" in parts:
            results["idle"] = bench_idle(base, window)
        if baseline:
            results["baseline"] = bench_baseline(base, baseline, exec_n, worker_n, repeat,
                                                 max(levels))
    except KeyboardInterrupt:
        progress("interrupted: stopping daemons and agents")
        return 130
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    host = (f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {sys.platform}, "
            f"load average at the end {load}")
    print(f"## dropsited daemon benchmark ({'--quick' if q else 'full'} run)\n\n{host}; "
          f"daemon: `{' '.join(DROPSITED)}`")
    if "latency" in results:
        print_latency(results["latency"], "inotify" if sys.platform.startswith("linux") else "listdir",
                      latency_n, budget)
    if "exec" in results:
        print_exec(results["exec"], exec_n, levels, repeat)
    if "worker" in results:
        print_worker(results["worker"], worker_n, levels, repeat)
    if "idle" in results:
        print_idle(results["idle"])
    if "baseline" in results:
        print_baseline(results["baseline"], baseline, max(levels), repeat)
    print(f"\n(total {time.perf_counter() - began:.0f} s; workspaces under {base}"
          f"{'' if args.keep else ', removed'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
