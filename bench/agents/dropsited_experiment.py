"""`dropsited` with a proposed fix simulated from outside, for `daemon_bench.py --dropsited`.

Experiment only: it patches a library internal at start so a proposed change can
be measured before anyone edits dropsited/. Its flags come before the usual ones:

    python bench/agents/dropsited_experiment.py [--no-pdeathsig] [--raw-inotify] up -c ...

--no-pdeathsig  spawn agents without preexec_fn (so CPython can vfork), i.e. without
                the parent-death signal: the upper bound for a cheaper way to set it
                (such as `setpriv --pdeathsig KILL --` in front of the command).
--raw-inotify   replace the watchdog Observer (three threads per event: inotify reader,
                move-pairing emitter, dispatcher) with one thread reading inotify
                (IN_CREATE | IN_MOVED_TO) and posting names straight to the loop.
"""

import ctypes
import os
import select
import struct
import sys
import threading

FLAGS = {"--no-pdeathsig", "--raw-inotify"}
IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = 0x80, 0x100, 0x4000
HEADER = struct.Struct("iIII")


class RawInboxWatcher:
    """Same interface as dropsited.daemon.dispatch.inbox_watch.InboxWatcher; one thread, Linux."""

    def __init__(self, inbox, notify) -> None:
        self.inbox = inbox
        self.notify = notify
        self.fd = -1
        self.stop_r, self.stop_w = os.pipe()

    def start(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(self.inbox),
                                                 IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        threading.Thread(target=self._run, daemon=True, name="inbox-inotify").start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            buf = os.read(self.fd, 1 << 16)
            offset = 0
            while offset < len(buf):
                _, mask, _, length = HEADER.unpack_from(buf, offset)
                name = buf[offset + HEADER.size:offset + HEADER.size + length].rstrip(b"\0")
                offset += HEADER.size + length
                self.notify(None if mask & IN_Q_OVERFLOW else os.fsdecode(name))

    def stop(self) -> None:
        os.write(self.stop_w, b"x")


def main() -> int:
    flags = {a for a in sys.argv[1:] if a in FLAGS}
    sys.argv = ["dropsited"] + [a for a in sys.argv[1:] if a not in FLAGS]
    if "--no-pdeathsig" in flags:
        import dropsited.daemon.supervision.child as child

        child._prctl = None  # ChildProcess.spawn then passes preexec_fn=None
    if "--raw-inotify" in flags:
        import dropsited.daemon.daemon as daemon

        daemon.InboxWatcher = RawInboxWatcher
    from dropsited.cli import main as dropsited_main

    return dropsited_main()


if __name__ == "__main__":
    sys.exit(main())
