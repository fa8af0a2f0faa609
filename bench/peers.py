"""dropsited side by side with RQ, Huey and Celery: drain throughput and one-task latency.

Run by `make bench-peers` (which builds .venv-peers with the peers and installs
Debian's redis-server), or by hand:

    .venv/bin/python bench/peers.py                 # full run: N = 2,000 and 10,000, 3 rounds
    .venv/bin/python bench/peers.py --quick         # N = 500, 1 round, 30 latency drops
    .venv/bin/python bench/peers.py --systems dropsited-exec,xargs --n 200   # no peers venv needed

This script runs in the project's venv and measures the real `dropsited up` of that
venv. Every peer runs from .venv-peers (its own consumer command, and the producer
side in bench/peer_apps/client.py), so the project's venv never carries them.

Throughput ("drain"): N no-op tasks are enqueued first; then the consumers are
started, and the clock runs from just before the consumer launch to the moment the
last task is recorded finished. Start-up (imports, forks, connecting) is therefore
inside the figure for every system alike; the launch -> first completion time is
printed apart. Each configuration runs once per round, rounds interleaved
(A B C ... A B C ...); medians and min-max are printed.

Latency: a consumer (concurrency 1) is started and left idle; tasks go one at a time,
each enqueued only once the previous is finished; p50/p99 of enqueue -> recorded
finished.

Two real `redis-server` processes on 127.0.0.1 (random free ports, their own temp
dirs), started once and stopped at the end: "fast" with persistence off (`save ""`,
`appendonly no`), "durable" with `appendonly yes` + `appendfsync always`. Each run
starts from FLUSHALL (and, durable, a finished BGREWRITEAOF so the AOF stays small).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon_bench as db  # noqa: E402  (the daemon harness: Run, DoneWatcher, spawn/stop, xargs)

import dropsited  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER_APPS = Path(__file__).resolve().parent / "peer_apps"
CLIENT = PEER_APPS / "client.py"
DEFAULT_PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
DRAIN_TIMEOUT = 900.0


# -- systems ------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """One row family of the tables: what runs, and against which dropsited row it is compared."""

    key: str
    label: str
    group: str  # "exec" or "worker": compared with "dropsited exec" or "dropsited worker"
    modes: tuple[str, ...] = ("fast", "durable")
    needs_peers: bool = True


SYSTEMS: list[System] = [
    System("dropsited-exec", "dropsited exec (bash agent)", "exec", needs_peers=False),
    System("rq-worker", "RQ Worker (fork per job)", "exec"),
    System("xargs", "xargs -P C (bash agent)", "exec", modes=("-",), needs_peers=False),
    System("dropsited-worker", "dropsited worker (Python)", "worker", needs_peers=False),
    System("huey-sqlite", "Huey SqliteHuey, -k process", "worker"),
    System("huey-redis", "Huey RedisHuey, -k process", "worker"),
    System("celery", "Celery prefork", "worker"),
    System("rq-simple", "RQ SimpleWorker x C", "worker"),
]
BY_KEY = {s.key: s for s in SYSTEMS}
BASELINE = {"exec": "dropsited-exec", "worker": "dropsited-worker"}

GUARANTEES = """\
- **dropsited** (exec and worker rows): a claim is one atomic rename into `active/` with
  the holder (pid + start time) in the file name; the task is done when its file is in
  `done/`, written after the agent exits 0 / replies. A holder that dies sends the task
  back to `inbox/`: at-least-once. durable: the task file and its folder are fsynced at
  every move (submit, done); fast: no fsync (a process crash loses nothing, a power cut
  may lose or undo moves).
- **RQ** (Worker, SimpleWorker): the worker pops the job from the Redis list and puts it
  in its StartedJobRegistry; a worker that dies mid-job leaves it there until the
  registry's clean-up moves it to FailedJobRegistry (re-run only if the job was given a
  `Retry`): at-most-once by default. Results and status in Redis (result_ttl 500 s).
- **Huey**: a worker removes the task from the queue (BRPOP on Redis; a DELETE in an
  exclusive transaction on SQLite) before running it, with no ack: a killed worker
  loses its task, at-most-once. SqliteHuey: WAL journal (Huey's default) in both modes;
  fast `fsync=False` = `PRAGMA synchronous=OFF`, durable `fsync=True` =
  `synchronous=FULL` (the WAL fsynced at every commit; with Huey's default `fsync=None`
  SQLite's own default, FULL, applies here too). `store_none=True` so that each task
  leaves a result record to count.
- **Celery**: fast = its default, early ack (the message is acknowledged just before the
  task runs: a worker killed mid-task loses it, at-most-once; up to 4 x C messages are
  reserved ahead, prefetch multiplier 4). durable = `task_acks_late=True` +
  `task_reject_on_worker_lost=True` (acknowledged after the task; an unacked message is
  restored after the Redis transport's visibility timeout, 1 h): at-least-once, like
  dropsited. Results in Redis database 1.
- **Redis** (RQ, RedisHuey, Celery): fast = no persistence (`save ""`, `appendonly no`:
  a Redis restart loses every queue); durable = `appendonly yes` + `appendfsync always`
  (every write is in the fsynced AOF before Redis replies).
- **xargs**: runs each file once, records nothing, retries nothing: the floor of
  spawning one process per task.
"""


# -- statistics and tables (pure functions) -------------------------------------------------
def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the rounds: the median is quoted, min-max shows the noise."""
    if not values:
        raise ValueError("no values")
    return statistics.median(values), min(values), max(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as daemon_bench, so the tables agree)."""
    return db.percentile(list(values), q)


def fmt_rate(values: Sequence[float]) -> str:
    """'1,234 (1,100-1,300)' for several rounds, '1,234' for one."""
    med, lo, hi = summarize(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})"


def fmt_ratio(value: float | None, baseline: float | None) -> str:
    if not value or not baseline:
        return "-"
    return f"{value / baseline:.2f}x"


Key = tuple[int, int, str, str]  # (n, concurrency, system key, mode)


def throughput_table(rates: dict[Key, list[float]], group: str, n: int,
                     levels: Sequence[int]) -> str:
    """One markdown table: the group's rows for one N, tasks/s per C with ratios against
    the dropsited row of the same mode (xargs, which has no modes, against fast)."""
    base_key = BASELINE[group]
    header = "| system | mode | " + " | ".join(
        f"C={c} tasks/s median (min-max) | vs dropsited" for c in levels) + " |"
    lines = [header, "|---|---|" + "---:|---:|" * len(levels)]
    for system in SYSTEMS:
        if system.group != group:
            continue
        for mode in system.modes:
            cells = []
            present = False
            for c in levels:
                values = rates.get((n, c, system.key, mode))
                if not values:
                    cells.append("- | -")
                    continue
                present = True
                base = rates.get((n, c, base_key, mode if mode != "-" else "fast"))
                base_med = summarize(base)[0] if base else None
                cells.append(f"{fmt_rate(values)} | {fmt_ratio(summarize(values)[0], base_med)}")
            if present:
                lines.append(f"| {system.label} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def startup_table(startups: dict[Key, list[float]], levels: Sequence[int]) -> str:
    """Launch -> first completion, median over every N and round, per C."""
    lines = ["| system | mode | " + " | ".join(f"C={c} s" for c in levels) + " |",
             "|---|---|" + "---:|" * len(levels)]
    for system in SYSTEMS:
        for mode in system.modes:
            cells = []
            for c in levels:
                values = [v for (n, cc, k, m), vs in startups.items()
                          if cc == c and k == system.key and m == mode for v in vs]
                cells.append(f"{statistics.median(values):.2f}" if values else "-")
            if any(cell != "-" for cell in cells):
                lines.append(f"| {system.label} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_table(rows: list[tuple[str, str, list[float]]]) -> str:
    lines = ["| system | mode | tasks | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for label, mode, lat in rows:
        lines.append(f"| {label} | {mode} | {len(lat)} | {percentile(lat, 50) * 1000:.1f} | "
                     f"{percentile(lat, 99) * 1000:.1f} |")
    return "\n".join(lines)


# -- a Redis client of twenty lines (the orchestrator carries no redis package) ---------------
class RedisError(Exception):
    pass


def encode_command(args: Iterable[str | bytes | int]) -> bytes:
    """RESP array of bulk strings, the form Redis accepts every command in."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def read_reply(stream: BinaryIO) -> object:
    """One RESP2 reply: simple string, error (raised), integer, bulk string or array."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise RedisError(f"unexpected reply {line!r}")


def redis_command(port: int, *args: str | bytes | int, timeout: float = 30.0) -> object:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(encode_command(args))
        with sock.makefile("rb") as stream:
            return read_reply(stream)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free at that moment)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server on 127.0.0.1 with its own directory, stopped by stop()."""

    def __init__(self, binary: str, base: Path, durable: bool) -> None:
        self.durable = durable
        self.mode = "durable" if durable else "fast"
        self.dir = base / f"redis-{self.mode}"
        self.dir.mkdir()
        self.port = free_port()
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if durable
                       else ["--appendonly", "no"])
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--daemonize", "no", *persistence]
        self.proc = db.spawn(argv, self.dir / "redis.log")
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis_command(self.port, "PING", timeout=1) == "PONG":
                    break
            except (OSError, RedisError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-1500:]
                    raise SystemExit(f"redis-server did not start:\n{log}") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def info(self, section: str) -> dict[str, str]:
        text = redis_command(self.port, "INFO", section)
        assert isinstance(text, bytes)
        return dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)

    def reset(self) -> None:
        """Empty every database; durable, also rewrite the AOF and wait for it to finish."""
        redis_command(self.port, "FLUSHALL")
        if not self.durable:
            return
        with contextlib.suppress(RedisError):  # "already in progress" is fine: we wait
            redis_command(self.port, "BGREWRITEAOF")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = self.info("persistence")
            if info.get("aof_rewrite_in_progress") == "0" and info.get("aof_rewrite_scheduled") == "0":
                return
            time.sleep(0.05)
        raise SystemExit("redis: BGREWRITEAOF did not finish within 60 s")

    def check_config(self) -> str:
        """The persistence settings as the server reports them (printed with the tables)."""
        values = []
        for name in ("appendonly", "appendfsync", "save"):
            reply = redis_command(self.port, "CONFIG", "GET", name)
            assert isinstance(reply, list)
            values.append(f"{name}={reply[1].decode()!r}")
        return " ".join(values)

    def stop(self) -> None:
        db.stop(self.proc)


# -- processes ------------------------------------------------------------------------------------
def spawn_env(argv: list[str], log_path: Path, env: dict[str, str],
              cwd: Path | None = None) -> subprocess.Popen:
    """daemon_bench.spawn with an environment: own session, tracked in db.LIVE."""
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    db.LIVE.append(proc)
    return proc


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """db.stop (SIGTERM, then SIGKILL to its group), then SIGKILL whatever is left in the
    group, so no prefork child or work horse outlives its run."""
    db.stop(proc, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Peers:
    """How to run the peers: their interpreter and bin directory, and the two Redis servers."""

    python: Path
    redis: dict[str, RedisServer] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.python.parent

    def env(self, system: str, mode: str, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERS_")}
        env.update({
            "PYTHONPATH": str(PEER_APPS),
            "PEERS_REDIS_URL": self.redis[mode].url,
            "PEERS_DURABLE": "1" if mode == "durable" else "0",
            "PEERS_HUEY_BACKEND": "sqlite" if system == "huey-sqlite" else "redis",
            "PEERS_SQLITE_FILE": str(workdir / "huey.db"),
        })
        return env

    def client(self, *args: str, env: dict[str, str], timeout: float = DRAIN_TIMEOUT) -> str:
        done = subprocess.run([str(self.python), str(CLIENT), *args], env=env, timeout=timeout,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"peers client {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-1500:]}{done.stderr[-1500:]}")
        return done.stdout

    def consumers(self, system: str, c: int, env: dict[str, str], workdir: Path,
                  burst: bool) -> list[subprocess.Popen]:
        """The system's own consumer command(s), at concurrency c."""
        log = workdir / f"{system}.log"
        if system in ("rq-worker", "rq-simple"):
            argv = [str(self.bin / "rq"), "worker", "-u", env["PEERS_REDIS_URL"], "-P", str(PEER_APPS),
                    "--logging_level", "WARNING", "--disable-job-desc-logging"]
            if system == "rq-simple":
                argv += ["-w", "rq.worker.SimpleWorker"]
            if burst:
                argv.append("--burst")
            # RQ runs one job at a time per worker: C workers for concurrency C.
            return [spawn_env([*argv, "default"], log, env, cwd=workdir) for _ in range(c)]
        if system in ("huey-sqlite", "huey-redis"):
            argv = [str(self.bin / "huey_consumer"), "huey_app.huey", "-w", str(c),
                    "-k", "process", "-q"]
            return [spawn_env(argv, log, env, cwd=workdir)]
        if system == "celery":
            argv = [str(self.bin / "celery"), "-A", "celery_app", "worker", "--pool", "prefork",
                    "-c", str(c), "-l", "warning", "--without-gossip", "--without-mingle",
                    "--without-heartbeat", "-n", f"peers-{os.getpid()}@%h"]
            return [spawn_env(argv, log, env, cwd=workdir)]
        raise ValueError(system)


# -- one drain ------------------------------------------------------------------------------------
@dataclass
class Drain:
    """One timed drain: its task count and the launch, first and last completion times."""

    n: int
    start: float
    first: float
    last: float

    @property
    def rate(self) -> float:
        return self.n / (self.last - self.start)

    @property
    def startup(self) -> float:
        return self.first - self.start

    @property
    def steady(self) -> float:
        """Tasks/s after the first completion: the same drain without the start-up."""
        span = self.last - self.first
        return (self.n - 1) / span if span > 0 else self.rate


def watch_drain(watcher: db.DoneWatcher, n: int, timeout: float) -> tuple[float, float]:
    """(first, last) time.monotonic() at which done/ held 1 and n task files."""
    first: float | None = None
    deadline = time.monotonic() + timeout
    while len(watcher.seen) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(watcher.seen)} of {n} tasks in done/ after {timeout:g} s")
        watcher._read(min(left, 1.0))
        if first is None and watcher.seen:
            first = time.monotonic()
    now = time.monotonic()
    return (first if first is not None else now), now


def agent_for(system: str, c: int) -> dict:
    if system == "dropsited-exec":
        return db.exec_agent(c)
    return db.worker_agent([sys.executable, str(db.PY_WORKER)], concurrency=c)


def dropsited_drain(base: Path, system: str, mode: str, c: int, n: int) -> Drain:
    """N tasks dropped into a fresh workspace's inbox, then `dropsited up`, timed until
    all N are in done/ (db.Run starts the daemon; db.DoneWatcher reads inotify)."""
    run = db.Run(base, f"{system}-{mode}-c{c}-n{n}")
    fast = mode == "fast"
    ds = dropsited.DropSite(run.ws, durable=not fast)
    for i in range(n):
        ds.submit(dropsited.TaskBuilder(f"task {i}", "bench").build())
    names = set(db.task_files(run.ws / "inbox"))
    watcher = db.DoneWatcher(run.ws / "done")
    try:
        start = time.monotonic()
        run.start_daemon([agent_for(system, c)], fast)
        first, last = watch_drain(watcher, n, DRAIN_TIMEOUT)
        run.check_alive()
        if not names <= watcher.seen:
            raise SystemExit(f"{system}: done/ does not hold the tasks dropped")
        return Drain(n, start, first, last)
    finally:
        watcher.close()
        run.stop()
        shutil.rmtree(run.dir, ignore_errors=True)


def xargs_drain(base: Path, c: int, n: int) -> Drain:
    """db.xargs_throughput on N fresh task files (it has no start-up to separate)."""
    stage = db.stage_tasks(base, n)
    rate = db.xargs_throughput(base, stage, c)
    shutil.rmtree(stage.parent, ignore_errors=True)
    return Drain(n, 0.0, 0.0, n / rate)


def peer_drain(base: Path, peers: Peers, system: str, mode: str, c: int, n: int) -> Drain:
    """N tasks enqueued; the client's counter started ('ready'); the consumers launched;
    timed until the client sees N finished."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{system}-{mode}-c{c}-", dir=base))
    peers.redis[mode].reset()
    env = peers.env(system, mode, workdir)
    peers.client("enqueue", system.split("-")[0], str(n), env=env)
    watcher = subprocess.Popen(
        [str(peers.python), str(CLIENT), "drain", system.split("-")[0], str(n),
         "--timeout", str(DRAIN_TIMEOUT)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db.LIVE.append(watcher)
    procs: list[subprocess.Popen] = []
    try:
        assert watcher.stdout is not None
        if watcher.stdout.readline().strip() != "ready":
            raise SystemExit(f"{system}: drain client failed: {watcher.communicate()[1][-1500:]}")
        start = time.monotonic()
        procs = peers.consumers(system, c, env, workdir, burst=True)
        out, err = watcher.communicate(timeout=DRAIN_TIMEOUT + 30)
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-1500:]}
        if "error" in result:
            log = (workdir / f"{system}.log")
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise SystemExit(f"{system} {mode} C={c}: {result['error']}\n{tail}")
        return Drain(n, start, result["first"], result["last"])
    finally:
        for proc in [watcher, *procs]:
            stop_group(proc, grace=10.0)
        shutil.rmtree(workdir, ignore_errors=True)


def peer_latency(base: Path, peers: Peers, system: str, mode: str, n: int,
                 budget: float) -> list[float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"lat-{system}-{mode}-", dir=base))
    peers.redis[mode].reset()
    env = peers.env(system, mode, workdir)
    procs = peers.consumers(system, 1, env, workdir, burst=False)
    try:
        out = peers.client("latency", system.split("-")[0], str(n), str(budget), env=env)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            stop_group(proc, grace=10.0)
        shutil.rmtree(workdir, ignore_errors=True)


# -- the run --------------------------------------------------------------------------------------
@dataclass
class Plan:
    ns: list[int]
    levels: list[int]
    repeat: int
    latency_n: int
    latency_budget: float
    systems: list[System]
    parts: set[str]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Results:
    """Every sample of a run, by (N, C, system, mode); dumped as JSON after each drain so
    an interrupted run keeps what it measured."""

    rates: dict[Key, list[float]] = field(default_factory=dict)
    steady: dict[Key, list[float]] = field(default_factory=dict)
    startups: dict[Key, list[float]] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)

    def add(self, key: Key, drain: Drain) -> None:
        self.rates.setdefault(key, []).append(drain.rate)
        if key[2] != "xargs":
            self.steady.setdefault(key, []).append(drain.steady)
            self.startups.setdefault(key, []).append(drain.startup)

    def dump(self, path: Path | None) -> None:
        if path is None:
            return
        def flat(d: dict[Key, list[float]]) -> dict[str, list[float]]:
            return {" ".join(map(str, k)): v for k, v in d.items()}
        path.write_text(json.dumps({"rates": flat(self.rates), "steady": flat(self.steady),
                                    "startups": flat(self.startups), "loads": self.loads},
                                   indent=1))


def run_throughput(base: Path, peers: Peers | None, plan: Plan,
                   json_path: Path | None = None) -> Results:
    results = Results()
    loads = results.loads
    for rnd in range(plan.repeat):
        loads.append(load())
        db.progress(f"round {rnd + 1}/{plan.repeat} (load average {loads[-1]})")
        for n in plan.ns:
            for c in plan.levels:
                for system in plan.systems:
                    for mode in system.modes:
                        drain = one_drain(base, peers, system.key, mode, c, n)
                        results.add((n, c, system.key, mode), drain)
                        results.dump(json_path)
                        db.progress(f"  N={n:,} C={c} {system.key} {mode}: {drain.rate:,.0f} tasks/s"
                                    + ("" if system.key == "xargs"
                                       else f", first after {drain.startup:.2f} s, "
                                            f"{drain.steady:,.0f} tasks/s after it"))
    return results


def one_drain(base: Path, peers: Peers | None, system: str, mode: str, c: int, n: int) -> Drain:
    if system == "xargs":
        return xargs_drain(base, c, n)
    if system.startswith("dropsited"):
        return dropsited_drain(base, system, mode, c, n)
    assert peers is not None
    return peer_drain(base, peers, system, mode, c, n)


def run_latency(base: Path, peers: Peers | None, plan: Plan) -> list[tuple[str, str, list[float]]]:
    rows = []
    for system in plan.systems:
        if system.key == "xargs":
            continue
        for mode in system.modes:
            db.progress(f"latency: {system.key} {mode}, up to {plan.latency_n} tasks "
                        f"or {plan.latency_budget:g} s")
            if system.key.startswith("dropsited"):
                data = db.daemon_latency(base, f"lat-{system.key}-{mode}", agent_for(system.key, 1),
                                         mode == "fast", plan.latency_n, plan.latency_budget)
                lat = data["lat"]
            else:
                assert peers is not None
                lat = peer_latency(base, peers, system.key, mode, plan.latency_n, plan.latency_budget)
            rows.append((system.label, mode, lat))
    return rows


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N = 500, one round, 30 latency tasks")
    parser.add_argument("--n", default=None, help="comma-separated task counts (2000,10000)")
    parser.add_argument("--levels", default="2,4", help="comma-separated concurrencies (2,4)")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (3; quick 1)")
    parser.add_argument("--latency-n", type=int, default=None, help="tasks per latency row (200; quick 30)")
    parser.add_argument("--latency-budget", type=float, default=None,
                        help="seconds per latency row once 10 tasks are done (60; quick 5)")
    parser.add_argument("--systems", default=",".join(s.key for s in SYSTEMS),
                        help="comma-separated: " + ", ".join(s.key for s in SYSTEMS))
    parser.add_argument("--only", default="throughput,latency", help="parts: throughput,latency")
    parser.add_argument("--peers-python", default=str(DEFAULT_PEERS_PYTHON),
                        help="the interpreter of the venv holding rq, huey, celery, redis")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the temp dirs go (one file system for all)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write every throughput sample here (after each drain)")
    args = parser.parse_args(argv)
    q = args.quick
    unknown = [k for k in args.systems.split(",") if k not in BY_KEY]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}")
    plan = Plan(
        ns=[int(x) for x in (args.n or ("500" if q else "2000,10000")).split(",")],
        levels=[int(x) for x in args.levels.split(",")],
        repeat=args.repeat or (1 if q else 3),
        latency_n=args.latency_n or (30 if q else 200),
        latency_budget=args.latency_budget or (5.0 if q else 60.0),
        systems=[BY_KEY[k] for k in args.systems.split(",")],
        parts=set(args.only.split(",")),
    )
    return args, plan


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    needs_peers = any(s.needs_peers for s in plan.systems)
    peers_python = Path(os.path.abspath(args.peers_python))  # consumers run in other dirs; no resolve(): a venv python is a symlink
    if needs_peers and not peers_python.exists():
        raise SystemExit(f"{peers_python} not found: `make bench-peers` builds it "
                         "(or pass --systems dropsited-exec,dropsited-worker,xargs)")
    if needs_peers and not shutil.which(args.redis_server):
        raise SystemExit(f"{args.redis_server} not found: `make bench-peers` installs "
                         "Debian's redis-server when run as root")

    signal.signal(signal.SIGTERM, db._sigterm)
    base = Path(tempfile.mkdtemp(prefix="peers-bench-", dir=args.dir))
    began = time.monotonic()
    load_start = load()
    peers: Peers | None = None
    versions = ""
    redis_config: dict[str, str] = {}
    try:
        if needs_peers:
            peers = Peers(peers_python)
            for durable in (False, True):
                server = RedisServer(args.redis_server, base, durable)
                peers.redis[server.mode] = server
                redis_config[server.mode] = server.check_config()
            versions = peers.client("versions", env=dict(os.environ)).strip()
            redis_version = subprocess.run([args.redis_server, "--version"], text=True,
                                           stdout=subprocess.PIPE).stdout.strip()
            versions += f"; {redis_version.split(' sha=')[0]}"
        # latency first: it is short, and a long run cut short still has it (in --json)
        json_path = Path(args.json) if args.json else None
        lat_rows = run_latency(base, peers, plan) if "latency" in plan.parts else []
        if json_path is not None:
            json_path.with_suffix(".latency.json").write_text(json.dumps(lat_rows))
        results = Results()
        if "throughput" in plan.parts:
            results = run_throughput(base, peers, plan, json_path)
    except KeyboardInterrupt:
        db.progress("interrupted: stopping consumers, daemons and redis")
        return 130
    finally:
        db.stop_all()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print(f"## dropsited vs RQ, Huey, Celery ({'--quick' if args.quick else 'full'} run, "
          f"{time.strftime('%Y-%m-%d %H:%M')})\n")
    print(f"command: `{command}`\n")
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {sys.platform}; load average "
          f"(1/5/15 min) at the start {load_start}, at each round {', '.join(results.loads) or '-'}, "
          f"at the end {load()}; {time.monotonic() - began:.0f} s in all")
    if versions:
        print(f"\npeers: {versions}")
        for mode, config in redis_config.items():
            print(f"redis {mode}: {config}")
    if results.rates:
        rounds = f"median of {plan.repeat} interleaved round{'s' if plan.repeat > 1 else ''}"
        groups = (("exec", "one process per task"), ("worker", "long-lived worker processes"))
        for group, title in groups:
            for n in plan.ns:
                table = throughput_table(results.rates, group, n, plan.levels)
                if table.count("\n") > 1:
                    print(f"\n### Drain throughput, {title}: N = {n:,} ({rounds})\n\n{table}")
        print("\ntasks/s = N / (last completion - consumer launch); 'vs dropsited' = the row's "
              "median / the dropsited row's median, same N, C and mode (xargs: against fast).")
        n = max(plan.ns)
        for group, title in groups:
            table = throughput_table(results.steady, group, n, plan.levels)
            if table.count("\n") > 1:
                print(f"\n### The same drains after the first completion, {title}: N = {n:,} "
                      f"({rounds})\n\n{table}")
        print("\ntasks/s = (N - 1) / (last completion - first completion): start-up left out "
              "(xargs has none to leave out and is not repeated here).")
        print(f"\n### Start-up: consumer launch -> first completion (median, all N)\n\n"
              f"{startup_table(results.startups, plan.levels)}")
    if lat_rows:
        print("\n### Latency, one task at a time, idle consumer at concurrency 1\n\n"
              f"{latency_table(lat_rows)}")
        print("\ndropsited: submit() -> done/<id>.json reported by inotify (daemon_bench.daemon_latency). "
              "Peers: enqueue -> the system's own finished record, polled every 0.5 ms "
              "(RQ job status, Huey result key, Celery result key). Huey's consumer keeps its "
              "default polling (-d 0.1 -b 1.15 -m 10) for SQLite; RedisHuey blocks in BRPOP.")
    print(f"\n### What each system guarantees in these runs\n\n{GUARANTEES}")
    print("Consumers: dropsited `up --fast` / `up` with an exec agent (bench/agents/echo_exec.sh) or "
          "a worker agent (bench/agents/json_worker.py), concurrency C; RQ `rq worker --burst` x C "
          "(default Worker forks a work horse per job; `-w rq.worker.SimpleWorker` runs jobs in the "
          "worker); `huey_consumer huey_app.huey -w C -k process -q`; `celery -A celery_app worker "
          "--pool prefork -c C -l warning --without-gossip --without-mingle --without-heartbeat` "
          "(cluster chatter off: one node). Logging at warning level everywhere.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
