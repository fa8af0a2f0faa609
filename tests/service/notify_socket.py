"""A real sd_notify receiver for tests: a datagram socket in tmp_path, read by a thread.

with notify_socket(tmp_path) as sock:
    env = {**os.environ, "NOTIFY_SOCKET": sock.env_value}
    ... start the daemon with env ...
    sock.wait_for("READY=1", timeout=5)
    assert "STOPPING=1" in sock.fields()
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class NotifyReceiver:
    """Collects every datagram sent to `env_value`, in arrival order."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        """Wraps a bound socket; `env_value` is what NOTIFY_SOCKET must say to reach it."""
        self.sock = sock
        self.env_value = env_value
        self.messages: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        """Start reading in the background."""
        self._thread.start()

    def _read(self) -> None:
        """Append each datagram until the socket is closed."""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._cond:
                self.messages.append(data.decode())
                self._cond.notify_all()

    def fields(self) -> list[str]:
        """Every `KEY=value` line received so far, messages split on newlines."""
        with self._cond:
            return [line for message in self.messages for line in message.split("\n")]

    def wait_for(self, field: str, timeout: float = 5.0) -> None:
        """Block until a message carries the line `field` (e.g. "READY=1"); AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while field not in self.fields():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {field!r} within {timeout}s; got {self.messages!r}")
                self._cond.wait(remaining)

    def wait_count(self, count: int, timeout: float = 5.0) -> list[str]:
        """Block until at least `count` messages arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.messages)}/{count} messages in {timeout}s")
                self._cond.wait(remaining)
            return list(self.messages)

    def close(self) -> None:
        """Stop the reader: shutdown wakes the blocked recv, then the socket closes."""
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=2)


@contextmanager
def notify_socket(tmp_path: Path, *, abstract: bool = False) -> Iterator[NotifyReceiver]:
    """Bind an AF_UNIX datagram socket (a file in tmp_path, or an abstract `@name`) and collect."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"dropsited-test-{os.getpid()}-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = f"@{name}"
    else:
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        env_value = str(path)
    receiver = NotifyReceiver(sock, env_value)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.close()
