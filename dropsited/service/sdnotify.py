"""The sd_notify protocol, spoken over `$NOTIFY_SOCKET` with the standard library only.

systemd (Type=notify) learns from these datagrams when the daemon is ready, reloading
or stopping, what to show in `systemctl status`, and that the main loop is alive
(WatchdogSec). Outside systemd NOTIFY_SOCKET is unset and every call is a cheap no-op,
so the daemon calls the Notifier unconditionally.

A notification is never worth crashing the daemon for: every failure is logged once
and swallowed, and the call returns False.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# Variables systemd hands to the service itself; an agent that inherited them could
# send READY=1 or WATCHDOG=1 on the daemon's behalf (NotifyAccess=main drops those,
# but a confused log line is enough harm), or think it was socket-activated.
_SERVICE_ONLY_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_SERVICE_ONLY_PREFIXES = ("LISTEN_",)

# A send must not stall the main loop if the manager is slow to drain its socket.
_SEND_TIMEOUT = 1.0


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of `environ` for an agent: without the variables meant for the daemon."""
    return {
        key: value
        for key, value in environ.items()
        if key not in _SERVICE_ONLY_VARS and not key.startswith(_SERVICE_ONLY_PREFIXES)
    }


def socket_address(notify_socket: str) -> str | bytes:
    """The address to sendto() for a NOTIFY_SOCKET value; `@name` is Linux's abstract namespace."""
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    if not notify_socket.startswith("/"):
        # vsock: and other transports exist in newer systemd; we speak only AF_UNIX.
        raise ValueError(f"unsupported NOTIFY_SOCKET address {notify_socket!r}")
    return notify_socket


def parse_watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """WATCHDOG_USEC as an integer, or None when no watchdog is meant for process `pid`.

    systemd sets WATCHDOG_PID when the variables may reach other processes; a value that
    is not our pid means the watchdog belongs to someone else (e.g. a wrapper).
    """
    raw_pid = environ.get("WATCHDOG_PID")
    if raw_pid and raw_pid.strip() != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def watchdog_due(last: float | None, now: float, interval: float | None) -> bool:
    """Whether a WATCHDOG=1 ping is due: never without a watchdog, at once before the first."""
    if interval is None:
        return False
    if last is None:
        return True
    return now - last >= interval


def one_line(text: str) -> str:
    """`text` with newlines and runs of spaces folded, since a STATUS= value ends at a newline."""
    return " ".join(text.split())


def format_status(running: int, total: int, queues: Mapping[str, int]) -> str:
    """The STATUS= summary the daemon shows: `3/4 agents running; inbox 5, active 2`."""
    depths = ", ".join(f"{name} {count}" for name, count in queues.items())
    summary = f"{running}/{total} agents running"
    return f"{summary}; {depths}" if depths else summary


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC= against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages for the daemon; does nothing when not run by systemd."""

    def __init__(
        self,
        address: str | bytes | None,
        watchdog_usec: int | None = None,
        *,
        usec_clock: Callable[[], int] = monotonic_usec,
    ) -> None:
        """Prefer `from_env`; this form lets tests point at their own socket."""
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._usec_clock = usec_clock
        self._sock: socket.socket | None = None
        self._failed_once = False
        self._last_ping: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, pid: int | None = None) -> Notifier:
        """A Notifier for the socket and watchdog systemd described in `environ`.

        A malformed NOTIFY_SOCKET gives a disabled Notifier and one warning, not an error:
        the daemon must still run (systemd will then time out the start and say why).
        """
        pid = os.getpid() if pid is None else pid
        watchdog_usec = parse_watchdog_usec(environ, pid)
        raw = environ.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None, watchdog_usec)
        try:
            return cls(socket_address(raw), watchdog_usec)
        except ValueError as exc:
            log.warning("sd_notify disabled: %s", exc)
            return cls(None, watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram; True if it was sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            self._socket().sendto(message, self.address)
        except OSError as exc:
            self._log_failure(exc)
            return False
        return True

    def ready(self) -> bool:
        """Tell systemd start-up (or a reload) is complete: agents are started."""
        return self.send("READY=1")

    def reloading(self) -> bool:
        """Tell systemd a reload began; MONOTONIC_USEC= is what Type=notify-reload expects."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self._usec_clock()}")

    def stopping(self) -> bool:
        """Tell systemd the drain began, so `systemctl status` says deactivating."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """Set the one-line status `systemctl status` shows."""
        return self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        """Ping the watchdog now, whatever the interval."""
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is set."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 1_000_000 / 2

    def maybe_ping(self, now_monotonic: float) -> bool:
        """Ping the watchdog if one is due at `now_monotonic`; True if a ping was sent.

        The daemon calls this from its main loop, so a stuck loop stops the pings and
        systemd restarts the service.
        """
        if not watchdog_due(self._last_ping, now_monotonic, self.watchdog_interval()):
            return False
        self._last_ping = now_monotonic
        return self.watchdog()

    def close(self) -> None:
        """Close the socket; a later send opens a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        """The datagram socket, opened on first use (close-on-exec, so agents never get it)."""
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(_SEND_TIMEOUT)
            self._sock = sock
        return self._sock

    def _log_failure(self, exc: OSError) -> None:
        """Warn on the first failed send only: a gone socket would otherwise flood the log."""
        if not self._failed_once:
            self._failed_once = True
            log.warning(
                "sd_notify to %r failed (further failures not logged): %s", self.address, exc
            )
