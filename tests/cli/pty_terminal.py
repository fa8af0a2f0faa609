"""A real command in a pseudo-terminal with its own controlling tty, for tests that
drive interactive verbs (review, top) as a person would."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time


class Terminal:
    """The real command on a pseudo-terminal that is its controlling tty (Ctrl-C works)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     preexec_fn=_own_tty, close_fds=True)
        os.close(slave)
        self.seen = ""
        self.pos = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            data = b""
        self.seen += data.decode("utf-8", "replace")
        return bool(data)

    def expect(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.pos:]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.seen}")
        self.pos = self.seen.index(text, self.pos) + len(text)

    def wait_for(self, count: int, text: str, timeout: float = 10) -> None:
        """Until `text` has appeared `count` times in all (a redrawn frame repeats it)."""
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} x{count} did not appear:\n{self.seen}")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _own_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
