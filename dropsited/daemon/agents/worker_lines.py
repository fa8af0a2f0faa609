"""Lines to and from a worker process's pipes, with deadlines and a size limit."""

from __future__ import annotations

import os
import select

OVERSIZE = object()  # readline(): a line over the limit was read and thrown away


class LineReader:
    """Reads newline-terminated lines from a pipe with a deadline (select + os.read).

    A line longer than `max_line` is not kept: its bytes are read and dropped up to its
    newline, and `readline` returns OVERSIZE, so a worker's output never costs the
    daemon more than `max_line` of memory."""

    def __init__(self, fd: int, max_line: int) -> None:
        self.fd = fd
        self.max_line = max_line
        self.buffer = b""
        self.eof = False
        self._skipping = False

    def readline(self, timeout: float | None) -> bytes | object | None:
        """A line (without newline), OVERSIZE, None on timeout; b"" only at end of file
        with nothing buffered."""
        while b"\n" not in self.buffer or self._skipping:
            if self._skipping and b"\n" in self.buffer:
                self.buffer = self.buffer.split(b"\n", 1)[1]
                self._skipping = False
                return OVERSIZE
            if self.eof:
                line, self.buffer = self.buffer, b""
                if self._skipping:
                    self._skipping = False
                    return OVERSIZE
                return line
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buffer += chunk
            if len(self.buffer) > self.max_line and b"\n" not in self.buffer:
                self.buffer, self._skipping = b"", True
            elif self._skipping and b"\n" not in self.buffer:
                self.buffer = b""
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > self.max_line:
            return OVERSIZE
        return line


def write_all(fd: int, data: bytes, deadline: float, clock, stop) -> bool:
    """Write `data` to a non-blocking pipe by `deadline`; False if it did not all go
    (the worker does not read its stdin) or `stop()` asked to give up."""
    view = memoryview(data)
    while view:
        left = deadline - clock()
        if left <= 0 or stop():
            return False
        _, ready, _ = select.select([], [fd], [], min(left, 0.25))
        if not ready:
            continue
        try:
            view = view[os.write(fd, view[:65536]):]
        except BlockingIOError:
            continue
    return True
