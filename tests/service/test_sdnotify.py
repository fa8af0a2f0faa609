"""sd_notify against a real AF_UNIX datagram socket; the watchdog timing as a pure table."""

from __future__ import annotations

import logging
import os
import time

import pytest

from dropsited.service.sdnotify import (
    Notifier,
    child_environ,
    format_status,
    one_line,
    parse_watchdog_usec,
    watchdog_due,
)

from .notify_socket import notify_socket


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_arrive_verbatim(tmp_path, abstract):
    with notify_socket(tmp_path, abstract=abstract) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": sock.env_value}, pid=1)
        notifier._usec_clock = lambda: 123456789
        assert notifier.ready()
        assert notifier.status("2/3 agents running\n inbox 4")
        assert notifier.reloading()
        assert notifier.stopping()
        assert notifier.watchdog()
        messages = sock.wait_count(5)
        notifier.close()
    assert messages == [
        "READY=1",
        "STATUS=2/3 agents running inbox 4",
        "RELOADING=1\nMONOTONIC_USEC=123456789",
        "STOPPING=1",
        "WATCHDOG=1",
    ]


def test_reloading_sends_the_real_monotonic_clock(tmp_path):
    with notify_socket(tmp_path) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": sock.env_value})
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        (message,) = sock.wait_count(1)
    usec = int(message.split("\n")[1].removeprefix("MONOTONIC_USEC="))
    assert 0 <= usec - before < 5_000_000


def test_without_notify_socket_everything_is_a_quiet_no_op():
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.maybe_ping(100.0)
    assert notifier.watchdog_interval() is None


def test_a_gone_socket_logs_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    with caplog.at_level(logging.WARNING, logger="dropsited.service.sdnotify"):
        assert not notifier.ready()
        assert not notifier.status("x")
        assert not notifier.stopping()
    assert len(caplog.records) == 1
    assert "missing.sock" in caplog.records[0].getMessage()


def test_an_unsupported_address_disables_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert "unsupported" in caplog.text


@pytest.mark.parametrize(
    ("environ", "pid", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "soon"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_usec_is_ours_only(environ, pid, expected):
    assert parse_watchdog_usec(environ, pid) == expected


def test_watchdog_interval_is_half_of_watchdog_usec():
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval() == 15.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": "1"}, pid=2).watchdog_interval() is None


@pytest.mark.parametrize(
    ("last", "now", "interval", "due"),
    [
        (None, 0.0, 15.0, True),  # first ping at once
        (100.0, 114.9, 15.0, False),
        (100.0, 115.0, 15.0, True),
        (100.0, 200.0, 15.0, True),
        (None, 0.0, None, False),  # no watchdog configured
        (100.0, 500.0, None, False),
    ],
)
def test_watchdog_due(last, now, interval, due):
    assert watchdog_due(last, now, interval) is due


def test_maybe_ping_follows_an_injected_clock(tmp_path):
    with notify_socket(tmp_path) as sock:
        notifier = Notifier(sock.env_value, watchdog_usec=2_000_000)  # ping every 1 s
        sent = [notifier.maybe_ping(now) for now in (10.0, 10.5, 10.99, 11.0, 11.2, 12.5)]
        messages = sock.wait_count(3)
    assert sent == [True, False, False, True, False, True]
    assert messages == ["WATCHDOG=1"] * 3


def test_child_environ_drops_what_belongs_to_the_daemon():
    environ = {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/run/n",
        "WATCHDOG_USEC": "1",
        "WATCHDOG_PID": "2",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "2",
        "LISTEN_FDNAMES": "x",
        "LISTENER": "kept: only the LISTEN_ prefix goes",
    }
    assert child_environ(environ) == {"PATH": "/bin", "LISTENER": environ["LISTENER"]}
    assert "NOTIFY_SOCKET" in environ  # the input is not modified


def test_status_text_is_one_line():
    assert one_line("a\nb  c\r\n") == "a b c"
    assert format_status(3, 4, {"inbox": 5, "active": 2}) == "3/4 agents running; inbox 5, active 2"
    assert format_status(0, 0, {}) == "0/0 agents running"
