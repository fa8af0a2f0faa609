"""Kill every agent of a daemon that died, from a small process that outlives it.

Agents must die with the daemon, SIGKILL included (issue 3 section 3). The kernel's
answer, ``PR_SET_PDEATHSIG``, has three gaps: it reaches only the direct child (a
grandchild that called ``setsid`` survives), it fires when the spawning *thread* ends,
and CPython can only set it from a ``preexec_fn`` (which forbids vfork) or through a
``setpriv`` exec in front of the agent: 0.8 ms of CPU per exec task, a quarter of
what xargs spends per task (bench/README.md).

The death watch is one child of the daemon that blocks on a pipe whose only write end
the daemon holds. The kernel closes that end however the daemon ends, so end-of-file
means the daemon is gone: the watch then SIGKILLs every process whose environment
carries this daemon's ``DROPSITED_DAEMON`` marker (agents, their children, and
grandchildren that left the session), in rounds until none is left. A daemon that
stops cleanly writes ``CLEAN`` first and the watch exits without scanning.

The watch leads its own session and ignores SIGINT, SIGTERM and SIGHUP, so a Ctrl-C
at the terminal or a stop signal sent to a whole service reaches only the daemon,
which drains. It runs as ``python -I`` on this file, which imports only the standard
library until the daemon is gone. If it dies (someone SIGKILLed it), the daemon
starts a new one and, until then, exec agents get ``PDEATHSIG`` as before;
long-lived agents always get both. The watch and the daemon SIGKILLed together leave
exec agents running until the next daemon's orphan sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

CLEAN = b"clean\n"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DeathWatch:
    """The daemon's side: start the watch, keep it running, dismiss it on a clean stop."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.popen: subprocess.Popen[bytes] | None = None
        self._write_fd: int | None = None

    def start(self) -> None:
        """Start a watch holding the read end of a fresh pipe; raise OSError if it
        cannot run (the caller falls back to PDEATHSIG)."""
        self._close_pipe()
        read_fd, write_fd = os.pipe()  # both non-inheritable: agents never hold them
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSITED_")}
            self.popen = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), str(read_fd),
                 _PACKAGE_ROOT, self.marker],
                stdin=subprocess.DEVNULL, pass_fds=(read_fd,), env=env, cwd="/",
                start_new_session=True)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._write_fd = write_fd

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def running(self) -> bool:
        """Whether the watch is alive; reaps it if it died."""
        return self.popen is not None and self.popen.poll() is None

    def dismiss(self, timeout: float = 2.0) -> None:
        """A clean stop: every agent is already stopped, so tell the watch to exit."""
        if self._write_fd is not None:
            with contextlib.suppress(OSError):  # the watch is gone already
                os.write(self._write_fd, CLEAN)
        self._close_pipe()
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def _close_pipe(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None


def wait_for_daemon_end(read_fd: int) -> bool:
    """Block until the daemon closes its end; True if it said the stop was clean."""
    tail = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            return tail.endswith(CLEAN)
        tail = (tail + chunk)[-len(CLEAN):]


def main(argv: list[str]) -> int:
    """The watch process: ``death_watch.py READ_FD PACKAGE_ROOT MARKER``."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    read_fd, package_root, marker = int(argv[1]), argv[2], argv[3]
    if wait_for_daemon_end(read_fd):
        return 0
    sys.path.insert(0, package_root)
    from dropsited.daemon.process_tree import kill_marked

    killed = kill_marked(marker)
    if killed:
        print(f"dropsited: daemon gone; its death watch SIGKILLed {len(killed)} agent "
              f"process(es): {' '.join(map(str, killed))}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
