"""Children the test drives, for in-process supervision tests (supervision/spawner.py).

A `FakeChild` has real pipes (os.pipe) where a process would have its stdin, stdout and
stderr, so the daemon's readers and writers run unchanged; what it prints and when it
exits is up to the test, and its age is the test's fake clock. `FakeSpawner` is what
`Context.spawn` calls: it records every child and can refuse to start, as exec would.

Fake pids are far above any pid_max (2**22 on Linux), so a stray signal to one, or to its
group, reaches no real process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
from collections.abc import Callable

FAKE_PIDS = itertools.count(1 << 30)


class FakeChild:
    """One spawned 'process'. The test calls `say`, `exit`; the daemon signals it."""

    def __init__(self, argv: list[str], clock: Callable[[], float], stdin: object,
                 obeys: bool = True) -> None:
        self.argv = argv
        self.pid = next(FAKE_PIDS)
        self._clock = clock
        self.started_at = clock()
        self.obeys = obeys  # exits at its stop signal; False: only SIGKILL ends it
        self.signals: list[int] = []
        self.rss = 0
        self._exited = threading.Event()
        self.returncode: int | None = None
        self._stop_deadline: float | None = None
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout = os.fdopen(out_r, "rb")
        self.stderr = os.fdopen(err_r, "rb")
        self.stdin = None
        self._in_r = None
        if stdin == subprocess.PIPE:
            in_r, in_w = os.pipe()
            self._in_r = os.fdopen(in_r, "rb")
            self.stdin = os.fdopen(in_w, "wb")

    # -- what the test does ---------------------------------------------------------
    def say(self, stdout: bytes = b"", stderr: bytes = b"") -> None:
        if stdout:
            os.write(self._out_w, stdout)
        if stderr:
            os.write(self._err_w, stderr)

    def exit(self, code: int, stdout: bytes = b"", stderr: bytes = b"") -> None:
        """Print, then exit with `code` (-N: killed by signal N); its pipes close."""
        if self._exited.is_set():
            return
        self.say(stdout, stderr)
        for fd in (self._out_w, self._err_w):
            os.close(fd)
        if self._in_r is not None:
            self._in_r.close()
        self.returncode = code
        self._exited.set()

    def read_line(self) -> bytes:
        """The next line the daemon wrote on this child's stdin."""
        return self._in_r.readline()

    def read_all(self) -> bytes:
        return self._in_r.read()

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()

    # -- what the daemon uses (supervision/spawner.Child) ----------------------------
    @property
    def pgid(self) -> int:
        return self.pid

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.argv, timeout)
        return self.returncode

    def exit_status(self) -> tuple[int | None, int | None]:
        code = self.returncode
        if code is None:
            return None, None
        return (None, -code) if code < 0 else (code, None)

    def ran_for(self) -> float:
        return self._clock() - self.started_at

    def send_signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        if sig == signal.SIGKILL or self.obeys:
            self.exit(-sig)
        return True

    def begin_stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        self._stop_deadline = self._clock() + grace
        self.send_signal_group(sig)

    def stop_done(self) -> bool:
        if self.alive and self._clock() < self._stop_deadline:
            return False
        self.kill_tree()
        return True

    def stop_blocking(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        self.begin_stop(sig, grace)
        if self.alive:
            self.kill_tree()
        return self.returncode

    def kill_tree(self, timeout: float = 5.0) -> list[int]:
        if self.alive:
            self.send_signal_group(signal.SIGKILL)
            return [self.pid]
        return []

    def rss_tree(self) -> int:
        return self.rss

    def close(self) -> None:
        """After the test: every descriptor the fake still holds."""
        self.exit(-signal.SIGKILL)
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class FakeSpawner:
    """`Context.spawn` for tests: makes FakeChild objects, or raises like a bad command."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.children: list[FakeChild] = []
        self.refuse: OSError | None = None  # set to make every start fail with it
        self.obeys = True
        self._spawned = threading.Condition()

    def __call__(self, argv, cwd=None, env=None, stdin=subprocess.DEVNULL, stdout=None,
                 stderr=None, *, pdeathsig: bool = True, clock=None) -> FakeChild:
        if self.refuse is not None:
            raise self.refuse
        child = FakeChild(list(argv), self.clock, stdin, obeys=self.obeys)
        child.env = env
        with self._spawned:
            self.children.append(child)
            self._spawned.notify_all()
        return child

    def next_child(self, count: int, timeout: float = 5.0) -> FakeChild:
        """The `count`-th child (1-based), waiting for a slot thread to spawn it."""
        with self._spawned:
            if not self._spawned.wait_for(lambda: len(self.children) >= count, timeout):
                raise AssertionError(f"child {count} was not spawned within {timeout}s")
            return self.children[count - 1]

    def close(self) -> None:
        for child in self.children:
            child.close()
