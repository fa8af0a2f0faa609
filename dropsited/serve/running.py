"""Running a uvicorn server on a bound socket until SIGINT, SIGTERM or SIGHUP."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_until_signal(server, sock: socket.socket, on_stop: Callable[[], object]) -> None:
    """`server.run` on `sock`, then `on_stop()`; exit status 0 after a stop signal.

    uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again
    for the handler that was there before. That handler is ours: it ends `run` with
    SystemExit(0) instead of the default death by signal, so `on_stop` still runs
    (and the process exits 0). SIGHUP stops it the same way.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    signal.signal(signal.SIGHUP, server.handle_exit)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass
    finally:
        on_stop()


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)
