"""An exec agent's pipes: the task in on stdin, stdout and stderr out as they come.

`Popen.communicate()` hands the output over only when the process ends, so a task
that ran for minutes (an LLM call, a build) showed nothing in its agent's log until
then, and `dropsited logs AGENT -f` had nothing to follow. `ExecPipes` copies each
chunk to the log as it arrives and keeps what the outcome needs: all of stdout (the
result, up to the task size limit) and the end of stderr (the history entry's tail).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from typing import IO, Any

from ..context import log_limited
from ..supervision.spawner import Child
from .agent_log import RotatingLog

READ_CHUNK = 65536
WRITE_CHUNK = 65536
STDERR_KEPT = 64 * 1024  # the history entry shows the last lines; this is plenty
# poll(2), as subprocess uses: for three pipes once, epoll's set-up syscalls cost more.
_Selector = getattr(selectors, "PollSelector", selectors.SelectSelector)


class ExecPipes:
    """Feeds stdin and drains stdout/stderr of one exec process, without threads."""

    def __init__(self, popen: Child, data: bytes | None, log: RotatingLog,
                 max_out: int = 4 * 1024 * 1024) -> None:
        self.log = log
        self.out = bytearray()
        # stdout beyond this is logged but not kept: the daemon's memory stays bounded
        # whatever an agent prints, and a result that size could not be stored anyway.
        self.max_out = max_out
        self.out_total = 0
        self.err = bytearray()
        self._stdin, self._stdout = popen.stdin, popen.stdout
        self._pending = memoryview(data or b"")
        self._partial: dict[int, bytearray] = {}  # per output fd: the line not yet ended
        self._selector = _Selector()
        if self._stdin is not None:
            if self._pending:
                os.set_blocking(self._stdin.fileno(), False)
                self._selector.register(self._stdin, selectors.EVENT_WRITE)
            else:
                _close(self._stdin)
        for stream in (popen.stdout, popen.stderr):
            if stream is not None:
                self._selector.register(stream, selectors.EVENT_READ)
                self._partial[stream.fileno()] = bytearray()

    @property
    def open(self) -> bool:
        """True while any pipe may still carry data."""
        return bool(self._selector.get_map())

    def pump(self, timeout: float) -> None:
        """Move whatever is ready within `timeout` seconds (returns at the first batch)."""
        if not self.open:
            return
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._stdin:
                self._feed()
            else:
                self._read(key.fileobj)

    def drain(self, limit: float) -> None:
        """After a kill: collect what is left, for at most `limit` seconds."""
        deadline = time.monotonic() + limit
        while self.open and (left := deadline - time.monotonic()) > 0:
            self.pump(min(left, 0.1))

    def close(self) -> None:
        for partial in self._partial.values():
            if partial:  # a pipe still open after drain(): keep its last words
                self._log(bytes(partial) + b"\n")
                partial.clear()
        for key in list(self._selector.get_map().values()):
            self._done(key.fileobj)
        self._selector.close()

    def _log(self, data: bytes) -> None:
        """A log that cannot be written (disk full) must not stop the task: the output
        is still collected for the outcome, and the daemon says so once a minute."""
        try:
            self.log.write(data)
        except (OSError, ValueError) as exc:
            log_limited(f"log:{self.log.path}", f"cannot write agent log {self.log.path}: {exc}")

    def _feed(self) -> None:
        try:
            sent = os.write(self._stdin.fileno(), self._pending[:WRITE_CHUNK])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the agent does not read its stdin, which is its right
            sent = len(self._pending)
        self._pending = self._pending[sent:]
        if not self._pending:
            self._done(self._stdin)

    def _read(self, stream: IO[Any]) -> None:
        fd = stream.fileno()
        data = os.read(fd, READ_CHUNK)
        if not data:
            if self._partial[fd]:  # the next output starts on a line of its own
                self._log(bytes(self._partial[fd]) + b"\n")
                self._partial[fd].clear()
            self._done(stream)
            return
        self._log_lines(fd, data)
        if stream is self._stdout:
            self.out_total += len(data)
            if self.out_total <= self.max_out:
                self.out += data
            elif self.out:
                self.out = bytearray()  # over the limit: the outcome is a failure anyway
        else:
            self.err += data
            if len(self.err) > 2 * STDERR_KEPT:
                del self.err[:-STDERR_KEPT]

    def _log_lines(self, fd: int, data: bytes) -> None:
        """Whole lines only, so stdout and stderr (and other processes of the agent)
        never share a line of the log; a line longer than a chunk goes out in pieces."""
        partial = self._partial[fd]
        partial += data
        cut = partial.rfind(b"\n") + 1 if len(partial) <= READ_CHUNK else len(partial)
        if cut:
            self._log(bytes(partial[:cut]))
            del partial[:cut]

    def _done(self, stream: IO[Any]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(stream)
        _close(stream)


def _close(stream: IO[Any]) -> None:
    with contextlib.suppress(OSError):  # a BrokenPipe on flush: nothing of ours was buffered
        stream.close()
