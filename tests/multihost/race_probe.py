"""Race two clients of one shared folder and count what the file system let both win.

The DropSite protocol needs some operations to be exclusive across every client of the
workspace: of two clients doing the same thing to the same name at the same instant,
exactly one may succeed. This probe measures it on a real shared mount:

| race     | both clients do, at one instant              | a double success means             |
|----------|----------------------------------------------|------------------------------------|
| unlink   | `unlink(x)` of one existing file              | two movers both passed the commit point of PROTOCOL.md §7 |
| rename   | `rename(x, x.<client>)` to two fresh names    | one task copied into two files     |
| excl     | `open(x, O_CREAT + O_EXCL)`                   | two writers both own one name      |
| link     | `link(own temp, x)`                           | two submits of one id both placed  |
| move     | dropsited: holder `complete()` vs reaper `store.move()` of one claimed task | one task in two folders |
| submit   | dropsited: `DropSite.submit()` of one id       | a duplicate id accepted (issue 17 defect 5) |

plus the observations of issue 13: does an `flock` taken on one client stop the other
(`flock`), how long until a file created on one client is listed on the other
(`listing`), and does inotify on one client see the other's changes (`inotify`).

Each client is a worker process (`race_probe.py worker DIR NAME`) on its own host, told
what to do over stdin; both are given one wall-clock instant to start at (the hosts of
the bed share the kernel's clock), so the two calls reach the server together.

Standalone, as root, on the bed of tests/multihost/bed.py:

    .venv/bin/python tests/multihost/race_probe.py                 # both filesystems, 1,000 races
    .venv/bin/python tests/multihost/race_probe.py --fs gluster --rounds 200 --races unlink move

Or on two mounts of one share that this machine already has (say two NFS mounts with
different options, or a mount and the server's own folder):

    python race_probe.py local /mnt/a/probe /mnt/b/probe
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import select
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PRIMITIVES = ("unlink", "rename", "excl", "link")
DROPSITED_RACES = ("move", "submit")
RACES = PRIMITIVES + DROPSITED_RACES
LEAD = 0.002  # seconds between "go" and the instant both clients act
MOVE_LEAD = 0.008  # for `move`: time to write the temp file before the unlinks meet


_real_unlink = os.unlink
_unlink_gate: list[float] = []


def _gated_unlink(path, *args, **kwargs):
    """os.unlink that, once armed, waits for the armed instant: aligns commit points."""
    if _unlink_gate:
        Worker.wait_until(_unlink_gate.pop())
    return _real_unlink(path, *args, **kwargs)


def gate_unlink_until(at: float | None) -> None:
    """Arm the next os.unlink in this process (store.move's commit point) to wait for `at`."""
    _unlink_gate.clear()
    if at is not None:
        _unlink_gate.append(at)
        os.unlink = _gated_unlink


# -- the worker (runs inside a host) -----------------------------------------------------------
class Worker:
    """One client: executes requests on `root` and answers each with one JSON line."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.locks: dict[str, int] = {}
        self.ds = None
        self.held: dict[str, object] = {}
        self.inotify_fd: int | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def serve(self) -> None:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                reply = getattr(self, "op_" + request["op"])(**request.get("args", {}))
            except OSError as exc:
                reply = {"ok": False, "err": errno.errorcode.get(exc.errno, str(exc.errno))}
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                reply = {"ok": False, "err": type(exc).__name__, "msg": str(exc)[:300]}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    @staticmethod
    def wait_until(at: float | None) -> None:
        """Sleep, then spin, until wall-clock `at`: both clients act at one instant."""
        if at is None:
            return
        delay = at - time.time() - 0.0005
        if delay > 0:
            time.sleep(delay)
        while time.time() < at:
            pass

    # set-up and checks
    def op_mkdir(self, name: str) -> dict:
        os.makedirs(self.path(name), exist_ok=True)
        return {"ok": True}

    def op_create(self, name: str) -> dict:
        with open(self.path(name), "x") as fh:
            fh.write(self.name)
        return {"ok": True}

    def op_exists(self, name: str, wait: float = 0.0) -> dict:
        deadline = time.monotonic() + wait
        while True:
            if os.path.lexists(self.path(name)):
                return {"ok": True}
            if time.monotonic() >= deadline:
                return {"ok": False}
            time.sleep(0.002)

    def op_hostname(self) -> dict:
        return {"ok": True, "host": os.uname().nodename, "pid": os.getpid()}

    # the primitive races
    def op_unlink(self, name: str, at: float | None = None) -> dict:
        self.wait_until(at)
        os.unlink(self.path(name))
        return {"ok": True}

    def op_rename(self, name: str, at: float | None = None) -> dict:
        self.wait_until(at)
        os.rename(self.path(name), self.path(f"{name}.{self.name}"))
        return {"ok": True}

    def op_excl(self, name: str, at: float | None = None) -> dict:
        self.wait_until(at)
        fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        return {"ok": True}

    def op_link_prep(self, name: str) -> dict:
        return self.op_create(f"{name}.{self.name}.src")

    def op_link(self, name: str, at: float | None = None) -> dict:
        self.wait_until(at)
        os.link(self.path(f"{name}.{self.name}.src"), self.path(name))
        return {"ok": True}

    # dropsited races: the real code paths of store.py
    def _ds(self):
        if self.ds is None:
            from dropsited import DropSite
            self.ds = DropSite(self.root, durable=False)
        return self.ds

    def op_ds_claimed(self, task_id: str) -> dict:
        """Submit a task and claim it: this client is its holder."""
        from dropsited.protocol import TaskBuilder
        ds = self._ds()
        task = TaskBuilder("probe", "probe").build()
        task.id = task_id
        ds.submit(task)
        task = ds.claim("holder", task_id)
        if task is None:
            return {"ok": False, "err": "claim failed"}
        self.held[task_id] = task
        return {"ok": True}

    def op_ds_reaper_prep(self, task_id: str, wait: float = 2.0) -> dict:
        """Load the claimed task as the reaper does just before its move (_reap_one)."""
        ds = self._ds()
        deadline = time.monotonic() + wait
        while (found := ds.store.locate(task_id, ("active",))) is None:
            if time.monotonic() > deadline:
                return {"ok": False, "err": "not visible"}
            time.sleep(0.002)
        task = ds.store.load(found.path)
        task.retry_count += 1
        task.log("inbox", attempt=task.retry_count, reaped=True, reason="probe")
        self.held[task_id] = (found.path, task)
        return {"ok": True}

    def op_move(self, task_id: str, at: float | None = None) -> dict:
        """The holder completes, or the reaper requeues: whoever was prepared as which.

        Both run store.move from its start (temp file written, then the source unlinked
        as the commit point); the unlink itself waits for `at`, so the two commit points
        meet on the server as they do when a holder and a reaper really collide.
        """
        ds, held = self._ds(), self.held.pop(task_id)
        gate_unlink_until(at)
        if isinstance(held, tuple):
            path, task = held
            ds.store.move(path, "inbox", task, held=False)
        else:
            ds.complete(held, {"by": self.name})
        return {"ok": True}

    def op_submit_prep(self, task_id: str) -> dict:
        from dropsited.protocol import TaskBuilder
        self._ds()
        task = TaskBuilder(f"submitted by {self.name}", self.name).build()
        task.id = task_id
        self.held[task_id] = task
        return {"ok": True}

    def op_submit(self, task_id: str, at: float | None = None) -> dict:
        ds, task = self._ds(), self.held.pop(task_id)
        self.wait_until(at)
        ds.submit(task)
        return {"ok": True}

    def op_where(self, task_id: str) -> dict:
        """Every folder holding a file for `task_id` (more than one: two copies)."""
        found = [folder for folder in ("inbox", "done", "failed", "blocked", "feedback")
                 if os.path.lexists(self.path(f"{folder}/{task_id}.json"))]
        # active/ holds only the tasks still claimed: listing it stays cheap.
        found += ["active" for name in os.listdir(self.path("active"))
                  if name == f"{task_id}.json" or name.startswith(task_id + "~")]
        return {"ok": True, "folders": found}

    # observations
    def op_flock(self, name: str) -> dict:
        fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return {"ok": False, "err": "EWOULDBLOCK"}
        self.locks[name] = fd
        return {"ok": True}

    def op_unflock(self, name: str) -> dict:
        fd = self.locks.pop(name, None)
        if fd is not None:
            os.close(fd)
        return {"ok": True}

    def op_listdir(self, name: str) -> dict:
        return {"ok": True, "names": sorted(os.listdir(self.path(name)))}

    def op_wait_listed(self, folder: str, name: str, timeout: float) -> dict:
        """Poll listdir(folder) until `name` shows; seconds after the call, or None."""
        start = time.time()
        while time.time() - start < timeout:
            if name in os.listdir(self.path(folder)):
                return {"ok": True, "at": time.time()}
            time.sleep(0.002)
        return {"ok": False, "at": None}

    def op_inotify_watch(self, folder: str) -> dict:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0 or libc.inotify_add_watch(fd, self.path(folder).encode(), 0x100 | 0x80 | 0x200) < 0:
            return {"ok": False, "err": errno.errorcode.get(ctypes.get_errno(), "?")}
        self.inotify_fd = fd  # IN_CREATE | IN_MOVED_TO | IN_DELETE
        return {"ok": True}

    def op_inotify_read(self, timeout: float) -> dict:
        names, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.inotify_fd], [], [], left)
            if not ready:
                break
            data = os.read(self.inotify_fd, 65536)
            offset = 0
            while offset < len(data):
                _, _, _, size = struct.unpack_from("iIII", data, offset)
                raw = data[offset + 16: offset + 16 + size]
                names.append(raw.rstrip(b"\0").decode())
                offset += 16 + size
        return {"ok": True, "names": names}


# -- the coordinator (runs where the test runs) --------------------------------------------------
class Client:
    """A worker process seen from the coordinator: one request, one reply."""

    def __init__(self, name: str, proc: subprocess.Popen) -> None:
        self.name = name
        self.proc = proc

    def send(self, op: str, **args: object) -> None:
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited {self.proc.wait()}")
        return json.loads(line)

    def call(self, op: str, **args: object) -> dict:
        self.send(op, **args)
        return self.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class RaceResult:
    fs: str
    race: str
    races: int = 0
    double: int = 0  # both clients were told they succeeded
    single: int = 0
    neither: int = 0
    two_copies: int = 0  # the outcome on disk: two files where there should be one
    no_copy: int = 0  # ... or none at all (a success reported as a failure: a lost task)
    loser_errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def row(self) -> dict:
        return {"fs": self.fs, "race": self.race, "races": self.races, "double": self.double,
                "single": self.single, "neither": self.neither, "two_copies": self.two_copies,
                "no_copy": self.no_copy,
                "loser_errors": dict(self.loser_errors), "seconds": round(self.seconds, 1)}


def race(a: Client, b: Client, judge: Client, kind: str, rounds: int, fs: str = "?",
         stop_at_first: bool = False) -> RaceResult:
    """`rounds` races of `kind` between clients a and b; `judge` (a third client, or
    one of them) checks what is on disk afterwards. `stop_at_first`: stop at the first
    double success or wrong outcome on disk (a test that only needs one)."""
    result = RaceResult(fs, kind)
    tag = uuid.uuid4().hex[:6]
    folder = f"race-{kind}-{tag}"
    judge.call("mkdir", name=folder)
    if kind in DROPSITED_RACES:
        a.call("mkdir", name=folder)  # DropSite() makes the layout on first use
    start = time.monotonic()
    for i in range(rounds):
        name = f"{folder}/x{i}"
        op, task_id = kind, None
        if kind == "unlink" or kind == "rename":
            _ok(a.call("create", name=name))
            _ok(b.call("exists", name=name, wait=2.0))
        elif kind == "link":
            _ok(a.call("link_prep", name=name))
            _ok(b.call("link_prep", name=name))
        elif kind == "move":
            task_id = f"p{tag}x{i}"
            _ok(_ds_call(a, folder, "ds_claimed", task_id=task_id))
            _ok(_ds_call(b, folder, "ds_reaper_prep", task_id=task_id))
        elif kind == "submit":
            task_id = f"p{tag}x{i}"
            _ok(_ds_call(a, folder, "submit_prep", task_id=task_id))
            _ok(_ds_call(b, folder, "submit_prep", task_id=task_id))
        at = time.time() + (MOVE_LEAD if kind == "move" else LEAD)
        for client in (a, b):
            if task_id:
                client.send("in_folder", folder=folder, inner=op,
                            inner_args={"task_id": task_id, "at": at})
            else:
                client.send(op, name=name, at=at)
        replies = [a.recv(), b.recv()]
        wins = sum(1 for r in replies if r["ok"])
        result.races += 1
        if wins == 2:
            result.double += 1
        elif wins == 1:
            result.single += 1
            result.loser_errors[next(r["err"] for r in replies if not r["ok"])] += 1
        else:
            result.neither += 1
            for r in replies:
                result.loser_errors["neither:" + str(r.get("err"))] += 1
        if kind == "rename":
            copies = sum(judge.call("exists", name=n, wait=0.0)["ok"]
                         for n in (name, f"{name}.{a.name}", f"{name}.{b.name}"))
            result.two_copies += copies > 1
            result.no_copy += copies == 0
        elif kind in DROPSITED_RACES:
            folders = _ds_call(judge, folder, "where", task_id=task_id)["folders"]
            result.two_copies += len(folders) > 1
            result.no_copy += not folders
        if stop_at_first and (result.double or result.two_copies or result.no_copy):
            break
    result.seconds = time.monotonic() - start
    return result


def _ds_call(client: Client, folder: str, op: str, **args: object) -> dict:
    """A dropsited request, on a worker rooted at the race's folder."""
    return client.call("in_folder", folder=folder, inner=op, inner_args=args)


def _ok(reply: dict) -> dict:
    if not reply.get("ok"):
        raise RuntimeError(f"probe set-up failed: {reply}")
    return reply


def _in_folder(self: Worker, folder: str, inner: str, inner_args: dict) -> dict:
    """Run a dropsited request with a DropSite on `folder` (one per folder, kept)."""
    cache = self.__dict__.setdefault("_sub", {})
    sub = cache.get(folder)
    if sub is None:
        sub = cache[folder] = Worker(self.path(folder), self.name)
    return getattr(sub, "op_" + inner)(**inner_args)


Worker.op_in_folder = _in_folder


def flock_probe(a: Client, b: Client, trials: int = 20, fs: str = "?") -> dict:
    """Does a's exclusive flock keep b out? Counts the trials where both got it."""
    name = f"flock-{uuid.uuid4().hex[:6]}"
    both = 0
    for i in range(trials):
        lock = f"{name}-{i}"
        _ok(a.call("flock", name=lock))
        got = b.call("flock", name=lock)["ok"]
        both += got
        b.call("unflock", name=lock)
        a.call("unflock", name=lock)
    return {"fs": fs, "probe": "flock", "trials": trials, "both_locked": both}


def listing_probe(a: Client, b: Client, trials: int = 5, timeout: float = 30.0,
                  fs: str = "?") -> dict:
    """Seconds from a's create until b's listdir shows the name (b listed the folder
    just before, so whatever it caches is warm)."""
    folder = f"listing-{uuid.uuid4().hex[:6]}"
    _ok(a.call("mkdir", name=folder))
    _ok(b.call("exists", name=folder, wait=5.0))
    delays = []
    for i in range(trials):
        b.call("listdir", name=folder)
        name = f"f{i}"
        b.send("wait_listed", folder=folder, name=name, timeout=timeout)
        time.sleep(0.05)
        created = time.time()
        _ok(a.call("create", name=f"{folder}/{name}"))
        seen = b.recv()
        delays.append(seen["at"] - created if seen["ok"] else float("inf"))
    return {"fs": fs, "probe": "listing", "trials": trials,
            "median_s": round(statistics.median(delays), 4), "max_s": round(max(delays), 4)}


def inotify_probe(a: Client, b: Client, files: int = 5, fs: str = "?") -> dict:
    """Events b's inotify reports for a's creates, and (control) for b's own."""
    folder = f"inotify-{uuid.uuid4().hex[:6]}"
    _ok(a.call("mkdir", name=folder))
    _ok(b.call("exists", name=folder, wait=5.0))
    _ok(b.call("inotify_watch", folder=folder))
    for i in range(files):
        _ok(a.call("create", name=f"{folder}/remote{i}"))
    remote = b.call("inotify_read", timeout=2.0)["names"]
    for i in range(files):
        _ok(b.call("create", name=f"{folder}/local{i}"))
    local = b.call("inotify_read", timeout=1.0)["names"]
    return {"fs": fs, "probe": "inotify", "remote_creates": files,
            "remote_events": len([n for n in remote if n.startswith("remote")]),
            "local_creates": files,
            "local_events": len({n for n in local if n.startswith("local")})}


def format_table(rows: list[dict]) -> str:
    """The race rows as a Markdown table (what docs/HOSTS-testbed.md shows)."""
    lines = ["| fs | race | races | both succeeded | one | neither | two copies on disk "
             "| no copy on disk | loser's error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(r["loser_errors"].items())) or "-"
        lines.append(f"| {r['fs']} | {r['race']} | {r['races']:,} | {r['double']} | {r['single']} "
                     f"| {r['neither']} | {r['two_copies']} | {r['no_copy']} | {errs} |")
    return "\n".join(lines)


def worker_argv(python: str, root: str, name: str) -> list[str]:
    return [python, os.path.abspath(__file__), "worker", root, name]


def open_client(popen_factory, name: str, argv: list[str]) -> Client:
    proc = popen_factory(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         bufsize=1)
    return Client(name, proc)


def run_all(a: Client, b: Client, judge: Client, fs: str, rounds: int,
            races: tuple[str, ...] = RACES, observations: bool = True) -> tuple[list, list]:
    rows = [race(a, b, judge, kind, rounds, fs).row() for kind in races]
    obs = []
    if observations:
        obs = [flock_probe(a, b, fs=fs), listing_probe(a, b, fs=fs), inotify_probe(a, b, fs=fs)]
    return rows, obs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    w = sub.add_parser("worker", help="serve requests on stdin (run inside a host)")
    w.add_argument("root")
    w.add_argument("name")
    loc = sub.add_parser("local", help="race two folders of one share mounted here")
    loc.add_argument("dir_a")
    loc.add_argument("dir_b")
    for p in (parser, loc):
        p.add_argument("--rounds", type=int, default=1000)
        p.add_argument("--races", nargs="+", default=list(RACES), choices=RACES)
        p.add_argument("--json", action="store_true", help="one JSON line per row as well")
    parser.add_argument("--fs", nargs="+", default=["gluster", "sshfs"])
    args = parser.parse_args(argv)
    if args.mode == "worker":
        Worker(args.root, args.name).serve()
        return 0
    if args.mode == "local":
        clients = [open_client(subprocess.Popen, n, worker_argv(sys.executable, d, n))
                   for n, d in (("a", args.dir_a), ("b", args.dir_b))]
        rows, obs = run_all(clients[0], clients[1], clients[0], "local", args.rounds,
                            tuple(args.races))
        return _report(rows, obs, args.json, clients)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bed import OBSERVER, Bed, BedUnavailable, venv_python
    try:
        bed = Bed(hosts=("alpha", "beta"), filesystems=args.fs).start()
    except BedUnavailable as exc:
        print(f"race_probe: the bed cannot run here: {exc}", file=sys.stderr)
        return 2
    rows, obs, clients = [], [], []
    try:
        for fs in args.fs:
            if bed.available.get(fs):
                print(f"skipped {fs}: {bed.available[fs]}", file=sys.stderr)
                continue
            root = bed.workspace(fs, "probe").path
            made = [open_client(lambda argv, h=h, **kw: bed.run(h, argv, **kw), h,
                                worker_argv(venv_python(), root, h))
                    for h in ("alpha", "beta", OBSERVER)]
            clients += made
            r, o = run_all(*made, fs, args.rounds, tuple(args.races))
            rows += r
            obs += o
        return _report(rows, obs, args.json, clients)
    finally:
        bed.close()


def _report(rows: list, obs: list, as_json: bool, clients: list[Client]) -> int:
    for client in clients:
        client.close()
    print(format_table(rows))
    print()
    for o in obs:
        print("  ".join(f"{k}={v}" for k, v in o.items()))
    if as_json:
        for row in rows + obs:
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
