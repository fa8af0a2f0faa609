"""Kill every agent of a daemon that died, from a small process that outlives it.

Agents must die with the daemon, SIGKILL included (issue 3 section 3). The kernel's
answer, ``PR_SET_PDEATHSIG``, has gaps: it reaches only the direct child (a grandchild
that called ``setsid`` survives), it fires when the spawning *thread* ends, and CPython
can only set it from a ``preexec_fn`` (which forbids vfork) or through a ``setpriv``
exec in front of the agent: 0.8 ms of CPU per exec task, a quarter of what xargs
spends per task (bench/README.md).

The death watch is one child of the daemon that blocks on a pipe whose only write end
the daemon holds. The daemon writes ``+PID`` when it spawns an agent and ``-PID`` once
it reaped it. The kernel closes the write end however the daemon ends, so end-of-file
means the daemon is gone: the watch then stops and SIGKILLs every descendant of every
agent still registered (found by parent pid before anything is killed, so a grandchild
that ran ``setsid env -i`` is among them), the process group of each agent (whatever
its environment: ``env -i`` or a rewritten process title does not hide it) and, in rounds until none is left, every process whose environment
carries this daemon's ``DROPSITED_DAEMON`` marker (children and grandchildren that left
the group). A daemon that stops cleanly writes ``clean`` first and the watch exits.

The watch is this file's own source fed to ``python -I -S -``: standard library
only, so it works whatever the daemon's ``sys.path`` was (PYTHONPATH, a zipapp). It
says ``ready`` on a second pipe once it ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C at
the terminal or a stop signal sent to a whole service must reach only the daemon,
which drains) and leads its own session. Until then, and whenever it is down, exec
agents get ``PDEATHSIG`` as before; long-lived agents always get both. A watch and
daemon SIGKILLed together leave agents to the next daemon's orphan sweep.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time

CLEAN = b"clean\n"
READY = b"ready\n"
MARKER_ENV = "DROPSITED_DAEMON"  # defined here: the watch runs alone and imports no dropsited
READY_TIMEOUT = 5.0
PROGRAM_NAME = "dropsited-death-watch"  # its argv[1], for ps and for tests


# -- the daemon's side -------------------------------------------------------------------
class DeathWatch:
    """Start the watch, tell it which agents to kill, dismiss it on a clean stop.

    Slot threads register and forget pids while the main loop may replace a dead
    watch: a lock keeps every write on the current pipe, and the registry lives here
    so a replacement starts with every agent still alive.
    """

    def __init__(self, marker: str, python: str | None = None) -> None:
        self.marker = marker
        self.python = python or sys.executable
        self.popen: subprocess.Popen[bytes] | None = None
        self.up = False  # ready and not known dead: exec agents may skip PDEATHSIG
        self.pids: set[int] = set()
        self._write_fd: int | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def start(self) -> None:
        """Start a watch (replacing a dead one) and wait for its ``ready``; OSError if
        it cannot run, and then ``up`` stays False."""
        with self._lock:
            self._discard()
            read_fd, write_fd = os.pipe()  # close-on-exec: agents never hold them
            ready_r, ready_w = os.pipe()
            try:
                self.popen = self._spawn(read_fd, ready_w)
            except BaseException:
                os.close(write_fd)
                raise
            finally:
                os.close(read_fd)
                os.close(ready_w)
            self._write_fd = write_fd
            try:
                self._await_ready(ready_r)
            except OSError:
                self._discard()
                raise
            finally:
                os.close(ready_r)
            self.up = True
            for pid in self.pids:
                self._send(b"+%d\n" % pid)

    def _spawn(self, read_fd: int, ready_w: int) -> subprocess.Popen[bytes]:
        source = _own_source().encode()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSITED_")}
        popen = subprocess.Popen(
            [self.python, "-I", "-S", "-", PROGRAM_NAME, str(read_fd), str(ready_w), self.marker],
            stdin=subprocess.PIPE, pass_fds=(read_fd, ready_w), env=env, cwd="/",
            start_new_session=True)
        with contextlib.suppress(OSError):  # a watch that died at once fails _await_ready
            popen.stdin.write(source)  # the program, read by `python -` (one pipe buffer)
        with contextlib.suppress(OSError):
            popen.stdin.close()
        return popen

    def _await_ready(self, ready_r: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        got = b""
        while not got.endswith(READY):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                raise OSError(f"the death watch did not start within {READY_TIMEOUT:g} s")
            chunk = os.read(ready_r, 64)
            if not chunk:
                raise OSError(f"the death watch exited at start ({self.popen.wait()})")
            got += chunk

    def running(self) -> bool:
        """Whether the watch is alive (reaps it if it died); False also marks it down."""
        alive = self.popen is not None and self.popen.poll() is None
        if not alive:
            self.up = False
        return alive

    def register(self, pid: int) -> None:
        with self._lock:
            self.pids.add(pid)
            self._send(b"+%d\n" % pid)

    def forget(self, pid: int) -> None:
        with self._lock:
            self.pids.discard(pid)
            self._send(b"-%d\n" % pid)

    def _send(self, line: bytes) -> None:
        if self._write_fd is None:
            return
        try:
            os.write(self._write_fd, line)  # under PIPE_BUF: one atomic write
        except OSError:
            self.up = False  # the watch died: the loop replaces it (SIGCHLD)

    def dismiss(self, timeout: float = 2.0) -> None:
        """A clean stop: every agent is already stopped, so tell the watch to exit."""
        with self._lock:
            self._discard(timeout)

    def _discard(self, timeout: float = 2.0) -> None:
        """Dismiss the current watch, if any, and make sure it is gone and reaped.

        Closing our end without CLEAN is what the daemon's death looks like: the
        watch would kill every agent of this live daemon."""
        self.up = False
        self._send(CLEAN)
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _own_source() -> str:
    """This module's text, read through its loader (a plain file, a zip, ...)."""
    loader = globals().get("__loader__")
    source = loader.get_source(__name__) if loader is not None else None
    if not source:
        raise OSError("the death watch's source is not available to run it")
    return source


# -- the watch process -----------------------------------------------------------------
def follow(read_fd: int) -> tuple[bool, set[int]]:
    """Block until the daemon's end closes; (clean stop?, pids still registered)."""
    pids: set[int] = set()
    pending, clean = b"", False
    while chunk := os.read(read_fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                pids.add(int(line[1:]))
            elif line[:1] == b"-":
                pids.discard(int(line[1:]))
            else:
                clean = line + b"\n" == CLEAN
    return clean, pids


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment has MARKER_ENV=marker (Linux /proc; else none)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    me, found = os.getpid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc; else empty)."""
    found = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
            found[int(name)] = int(raw[raw.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return found


def descendants_of(roots: set[int]) -> set[int]:
    """Every live descendant of `roots` (not the roots themselves), by parent pid."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child not in roots:
                found.add(child)
                stack.append(child)
    return found


def freeze_trees(groups: set[int]) -> set[int]:
    """SIGSTOP every descendant of the registered agents, in rounds, and return them.

    Done before any kill: a grandchild that left the session and cleared its
    environment (`setsid env -i ...`) is found only through its parent, and once its
    parent is killed it is re-parented away and can no longer be told apart."""
    tree: set[int] = set()
    for _ in range(5):
        found = descendants_of(groups | tree) - tree
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        tree |= found
    return tree


def kill_all(groups: set[int], marker: str, timeout: float = 5.0) -> set[int]:
    """SIGKILL the registered agents' groups, their descendants and every marked process,
    in rounds until a scan finds nothing marked (a process may fork between scan and
    kill)."""
    killed: set[int] = set()
    for pid in freeze_trees(groups):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        rounds += 1
        for pgid in groups if rounds <= 3 else ():
            for kill, target in ((os.killpg, pgid), (os.kill, pgid)):
                with contextlib.suppress(OSError):
                    kill(target, signal.SIGKILL)
                    killed.add(pgid)
        marked = marked_pids(marker)
        for pid in marked:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        if (not marked and rounds >= 3) or time.monotonic() > deadline:
            return killed
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    """``python - dropsited-death-watch READ_FD READY_FD MARKER``, the source on stdin."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    read_fd, ready_fd, marker = int(argv[2]), int(argv[3]), argv[4]
    os.write(ready_fd, READY)
    os.close(ready_fd)
    clean, groups = follow(read_fd)
    if clean:
        return 0
    killed = kill_all(groups, marker)
    if killed:
        print(f"dropsited: daemon gone; its death watch SIGKILLed {len(killed)} agent "
              f"process(es): {' '.join(map(str, sorted(killed)))}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
