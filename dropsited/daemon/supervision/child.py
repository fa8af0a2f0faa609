"""One supervised child process and everything it spawns.

The child starts in a new session, so it leads its own process group and the daemon
can signal the whole group (``os.killpg``) like honcho does. On Linux it also gets
``PR_SET_PDEATHSIG=SIGKILL``, so it dies with the daemon even when the daemon is
SIGKILLed. Stopping never leaves a grandchild behind: after the group signal and the
grace period, ``kill_tree`` SIGKILLs every process in the group or session, every
descendant and every process that inherited this child's ``DROPSITED_CHILD`` tag (see
``process_tree``), even after the leader itself exited (supervisor #1101, pm2 #6084).

About ``preexec_fn``: CPython warns it is unsafe with threads, because the forked child
may need a lock another thread held at fork time. Ours only calls a ``prctl`` that was
resolved through ctypes before the fork, plus ``getppid``/``kill``; glibc's malloc is
fork-safe, so no lock is at stake. It does cost something: CPython cannot use vfork
when ``preexec_fn`` is set, so spawning copies the daemon's page tables. Measured for
``spawn(["/bin/true"])``, p50: 0.7 ms without, 1.8 ms with, in a small daemon; 0.7 ms
without and 10 ms with in a daemon holding 300 MB (a Python wrapper that sets the flag
and execs would cost 7.7 ms). So where util-linux's ``setpriv`` exists, the child is
started as ``setpriv --pdeathsig KILL -- argv`` instead, with no ``preexec_fn``: the
fast spawn path stays open (exec throughput doubled in bench/daemon_bench.py). The
hook remains the fallback. PDEATHSIG fires when the *thread* that spawned the child
ends: spawn from the daemon's long-lived main loop, not from a short thread.

Even the setpriv exec costs an exec agent 0.8 ms of CPU per task, so the daemon runs
a death watch (``containment/death_watch.py``) and spawns exec agents with ``pdeathsig=False``
while it runs; long-lived agents, spawned once, keep both.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import psutil

from dropsited.daemon.containment import process_tree
from dropsited.daemon.containment.process_tree import CHILD_TAG_ENV

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

_PR_SET_PDEATHSIG = 1
Stream = int | IO[Any] | None


def _load_prctl() -> Callable[..., int] | None:
    """Resolve libc's prctl once, at import, so the forked child does no lookup."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_prctl = _load_prctl()
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _check_executable(program: str, cwd: str | os.PathLike[str] | None,
                      path: str | None) -> None:
    """Raise OSError now, as exec would, for a program that cannot run.

    Behind `setpriv` a missing program would be setpriv's exit status 127
    instead of the OSError that tells the daemon the command is wrong.
    """
    if os.sep in program:
        full = program if os.path.isabs(program) else os.path.join(cwd or ".", program)
        if not os.path.exists(full):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    elif shutil.which(program, path=path) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _pdeathsig_hook(parent_pid: int) -> Callable[[], None]:
    """Build the preexec callback: die with SIGKILL when the parent dies.

    If the parent died between fork and prctl, the signal would never come, so the
    callback checks the parent pid and kills itself in that case.
    """

    def hook() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # type: ignore[misc]
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


class ChildProcess:
    """A spawned agent process; create it with ``ChildProcess.spawn``."""

    def __init__(self, popen: subprocess.Popen[bytes], tag: str, started_at: float,
                 clock: Callable[[], float]) -> None:
        self.popen = popen
        self.tag = tag  # value of DROPSITED_CHILD in the whole tree's environment
        self.started_at = started_at  # clock() at spawn; time.monotonic by default
        self._clock = clock
        self._psutil: psutil.Process | None = None  # made on first use: spawning stays cheap
        self._seen: dict[int, psutil.Process] = {}  # descendants met so far
        self._stop_deadline: float | None = None

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = DEVNULL,
        stdout: Stream = PIPE,
        stderr: Stream = PIPE,
        *,
        pdeathsig: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> ChildProcess:
        """Start ``argv`` in its own session with a tag in its env; raise OSError if
        the program cannot be executed. ``env`` None means the daemon's environment."""
        tag = uuid.uuid4().hex
        child_env = dict(os.environ if env is None else env)
        child_env[CHILD_TAG_ENV] = tag
        argv, hook = list(argv), None
        if pdeathsig and _SETPRIV is not None:
            _check_executable(argv[0], cwd, child_env.get("PATH"))
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        elif pdeathsig and _prctl is not None:
            hook = _pdeathsig_hook(os.getpid())
        popen = subprocess.Popen(
            argv, cwd=cwd, env=child_env, stdin=stdin, stdout=stdout, stderr=stderr,
            start_new_session=True, close_fds=True, preexec_fn=hook,
        )
        return cls(popen, tag, clock(), clock)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.popen.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return self.popen.stderr

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the leader (subprocess.TimeoutExpired after `timeout`)."""
        return self.popen.wait(timeout)

    @property
    def _handle(self) -> psutil.Process | None:
        """A pid-reuse-safe psutil handle, made only while the pid is surely ours:
        before Popen reaped the leader (a zombie still holds its pid)."""
        if self._psutil is None and self.popen.returncode is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._psutil = psutil.Process(self.popen.pid)
        return self._psutil

    @property
    def pgid(self) -> int:
        """The child's process group, equal to its pid (it is a session leader)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Popen's convention: None while running, -N when killed by signal N."""
        return self.popen.returncode

    def poll(self) -> int | None:
        """Reap the leader if it exited; return ``returncode``. Never blocks."""
        return self.popen.poll()

    def exit_status(self) -> tuple[int | None, int | None]:
        """``(exit_code, signal)`` as ``decide_after_exit`` wants; both None if running."""
        code = self.poll()
        if code is None:
            return None, None
        return (None, -code) if code < 0 else (code, None)

    def ran_for(self) -> float:
        """Seconds since spawn, by the clock given to ``spawn``."""
        return self._clock() - self.started_at

    def send_signal_group(self, sig: int) -> bool:
        """Signal the whole process group; False if it is empty."""
        return process_tree.signal_group(self.pgid, sig)

    def _known_tree(self) -> list[psutil.Process]:
        """Leader and descendants reachable now, remembered for after the leader exits."""
        handle = self._handle
        if handle is None:
            return [p for p in self._seen.values() if process_tree.is_alive(p)]
        procs = [handle] if process_tree.is_alive(handle) else []
        for proc in process_tree.descendants(handle):
            self._seen[proc.pid] = proc
        return procs + [p for p in self._seen.values() if process_tree.is_alive(p)]

    def rss_tree(self) -> int:
        """Resident memory of the child and all its live descendants, in bytes."""
        total = 0
        for proc in self._known_tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total

    def _group_alive(self) -> bool:
        """Whether a live (non-zombie) process remains in the child's group."""
        if self.poll() is None:
            return True
        return bool(process_tree.tree_members(pgid=self.pgid))

    def _leftovers(self) -> list[psutil.Process]:
        found = {p.pid: p for p in self._known_tree()}
        for proc in process_tree.tree_members(pgid=self.pgid, tag=self.tag):
            found.setdefault(proc.pid, proc)
            for sub in process_tree.descendants(proc):
                found.setdefault(sub.pid, sub)
        return list(found.values())

    def kill_tree(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL the whole tree until nothing is left, then reap the leader.

        Rounds repeat because a process may fork between our scan and our SIGKILL;
        the fork inherits the group and the tag, so the next scan finds it.
        Returns the pids that were killed.
        """
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() is None:
                self.send_signal_group(signal.SIGKILL)
            procs = self._leftovers()
            if not procs:
                break
            killed.update(process_tree.signal_all(procs, signal.SIGKILL))
            time.sleep(0.005)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        return sorted(killed)

    def begin_stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Send ``sig`` to the group and start the grace period; returns at once."""
        self._known_tree()  # remember descendants while the leader can still show them
        self._stop_deadline = self._clock() + grace
        self.send_signal_group(sig)

    def stop_done(self) -> bool:
        """Advance a stop begun with ``begin_stop``; True when nothing is left.

        Cheap while the leader runs; once the leader is gone it waits for the rest of
        the group, and at the deadline (or when the group is empty) it ``kill_tree``s
        the leftovers, including processes that left the group.
        """
        if self._stop_deadline is None:
            raise RuntimeError("stop_done() called before begin_stop()")
        if self._clock() < self._stop_deadline and self._group_alive():
            return False
        self.kill_tree()
        return True

    def stop_blocking(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """Stop the child and its whole tree; return its ``returncode``."""
        self.begin_stop(sig, grace)
        while not self.stop_done():
            time.sleep(0.01)
        return self.returncode
