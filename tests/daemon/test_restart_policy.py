"""Restart policy: pure functions driven with fake times and fake random numbers."""

import pytest

from dropsited.daemon.supervision.restart_policy import (
    EX_CONFIG,
    Backoff,
    FailureWindow,
    backoff_delay,
    decide_after_exit,
    is_failure,
)
from dropsited.daemon.supervision.states import AgentState

S = AgentState


@pytest.mark.parametrize(
    "failures, rand, expected",
    [
        (0, 0.0, 0.0),  # nothing failed: no wait
        (1, 0.0, 0.5),  # base 1.0, lowest jitter is half
        (1, 0.5, 0.75),
        (2, 0.0, 1.0),  # base 2.0
        (3, 0.0, 2.0),  # base 4.0
        (10, 0.0, 5.0),  # capped at maximum 10.0
        (10_000, 0.0, 5.0),  # huge exponent does not overflow
        (3, 0.999, 3.998),
    ],
)
def test_backoff_delay(failures, rand, expected):
    assert backoff_delay(failures, 1.0, 10.0, 2.0, rand) == pytest.approx(expected)


def test_backoff_delay_never_reaches_maximum_and_grows():
    delays = [backoff_delay(n, 0.5, 30.0, 3.0, 0.0) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert all(d < 30.0 for d in delays)


@pytest.mark.parametrize("rand", [-0.1, 1.0, 2.0])
def test_backoff_delay_rejects_rand_outside_unit_interval(rand):
    with pytest.raises(ValueError):
        backoff_delay(1, 1.0, 10.0, 2.0, rand)


def test_backoff_delay_rejects_shrinking_factor():
    with pytest.raises(ValueError):
        backoff_delay(1, 1.0, 10.0, 0.5, 0.0)


def test_failure_window_counts_only_recent_failures():
    w = FailureWindow(window=60.0)
    for t in (0.0, 10.0, 50.0):
        w = w.record(t)
    assert w.count(50.0) == 3
    assert w.count(65.0) == 2  # the failure at t=0 aged out
    assert w.count(200.0) == 0
    assert w.record(120.0).times == (120.0,)  # recording prunes


def test_failure_window_is_immutable_value():
    w = FailureWindow(window=5.0)
    w2 = w.record(1.0)
    assert w.times == () and w2.times == (1.0,)
    assert w2 == FailureWindow(5.0, (1.0,))


@pytest.mark.parametrize(
    "times, now, limit, exhausted",
    [
        ((1.0, 2.0, 3.0), 3.0, 3, True),
        ((1.0, 2.0), 3.0, 3, False),
        ((1.0, 2.0, 3.0), 61.5, 3, False),  # t=1 aged out of the 60 s window
        ((1.0, 2.0, 3.0), 3.0, 0, False),  # 0 disables giving up
    ],
)
def test_failure_window_exhausted(times, now, limit, exhausted):
    assert FailureWindow(60.0, times).exhausted(now, limit) is exhausted


@pytest.mark.parametrize(
    "code, sig, ran_for, memory, failed",
    [
        (0, None, 100.0, False, False),  # clean exit after running: fine
        (0, None, 0.2, False, True),  # clean exit before start_seconds: failed start
        (1, None, 100.0, False, True),  # crash after RUNNING counts (supervisor #405)
        (None, 9, 100.0, False, True),  # killed by a signal
        (0, None, 100.0, True, True),  # memory-limit restart counts (pm2 #839)
    ],
)
def test_is_failure(code, sig, ran_for, memory, failed):
    assert is_failure(code, sig, ran_for, 1.0, memory) is failed


def decide(code=1, sig=None, ran_for=100.0, restart="always", stopping=False,
           failures=0, give_up=5, **kw):
    return decide_after_exit(code, sig, ran_for, restart, 1.0, stopping, failures, give_up, **kw)


@pytest.mark.parametrize(
    "kwargs, state, restart, failed",
    [
        # a stop we requested wins over everything, even exit 78
        (dict(code=EX_CONFIG, stopping=True), S.STOPPED, False, False),
        (dict(code=None, sig=15, stopping=True), S.STOPPED, False, False),
        # ... and a stop to restart (a worker past its timeout) restarts at once, uncounted
        (dict(code=None, sig=15, stopping=True, restart_requested=True), S.STOPPED, True, False),
        (dict(code=EX_CONFIG, stopping=True, restart_requested=True), S.STOPPED, True, False),
        (dict(code=1, stopping=True, failures=4, restart_requested=True), S.STOPPED, True, False),
        # EX_CONFIG: restarting cannot help
        (dict(code=EX_CONFIG), S.FATAL, False, True),
        (dict(code=EX_CONFIG, restart="never"), S.FATAL, False, True),
        # never
        (dict(code=1, restart="never"), S.EXITED, False, True),
        (dict(code=0, restart="never"), S.EXITED, False, False),
        # on-failure
        (dict(code=0, restart="on-failure"), S.EXITED, False, False),
        (dict(code=0, ran_for=0.1, restart="on-failure"), S.EXITED, False, True),
        (dict(code=3, restart="on-failure"), S.BACKOFF, True, True),
        (dict(code=None, sig=9, restart="on-failure"), S.BACKOFF, True, True),
        (dict(code=0, restart="on-failure", memory_limit_hit=True), S.BACKOFF, True, True),
        # always
        (dict(code=0, restart="always"), S.BACKOFF, True, False),
        (dict(code=2, restart="always"), S.BACKOFF, True, True),
        # give up: this failure is the 5th in the window
        (dict(code=1, failures=4, give_up=5), S.FATAL, False, True),
        (dict(code=1, failures=3, give_up=5), S.BACKOFF, True, True),
        (dict(code=1, failures=100, give_up=0), S.BACKOFF, True, True),
        # a clean exit after running does not push a healthy agent over the limit
        (dict(code=0, failures=4, give_up=5), S.BACKOFF, True, False),
        # memory-limit kills count toward giving up (pm2 #839)
        (dict(code=None, sig=9, failures=4, memory_limit_hit=True), S.FATAL, False, True),
        # failed start, then crash after RUNNING: both count (supervisor #405)
        (dict(code=1, ran_for=30.0, failures=4), S.FATAL, False, True),
    ],
)
def test_decide_after_exit(kwargs, state, restart, failed):
    d = decide(**kwargs)
    assert (d.state, d.restart, d.failed) == (state, restart, failed)
    if not d.restart:
        assert d.delay == 0.0
    assert d.reason


def test_decide_delay_grows_with_failures_in_window():
    policy = Backoff(initial=1.0, max=8.0, factor=2.0)
    delays = [decide(failures=n, give_up=0, backoff=policy).delay for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_decide_delay_uses_injected_jitter():
    d = decide(failures=1, backoff=Backoff(2.0, 60.0, 2.0), rand=0.5)
    assert d.delay == pytest.approx(3.0)  # base 4.0: 2.0 + 2.0 * 0.5


def test_decide_clean_restart_without_failures_is_immediate():
    assert decide(code=0, restart="always").delay == 0.0
    assert decide(code=1, stopping=True, restart_requested=True).delay == 0.0


def test_a_restart_request_without_a_stop_is_an_ordinary_exit():
    """restart_requested only says why a stop was asked for; an exit nobody asked for
    is judged as any other."""
    assert decide(code=1, restart_requested=True).state is S.BACKOFF


def test_backoff_delay_method_is_the_function():
    policy = Backoff(0.5, 60.0, 3.0)
    assert [policy.delay(n, 0.25) for n in range(5)] == [
        backoff_delay(n, 0.5, 60.0, 3.0, 0.25) for n in range(5)]


def test_decide_rejects_unknown_restart_mode():
    with pytest.raises(ValueError):
        decide(restart="sometimes")


def test_crash_loop_after_running_reaches_fatal():
    """A program that crashes 30 s after each start ends FATAL, not restarting forever."""
    window, now, give_up = FailureWindow(window=300.0), 0.0, 4
    states = []
    for _ in range(10):
        now += 30.0
        d = decide_after_exit(1, None, 30.0, "always", 1.0, False, window.count(now), give_up)
        if d.failed:
            window = window.record(now)
        states.append(d.state)
        if not d.restart:
            break
        now += d.delay
    assert states == [S.BACKOFF, S.BACKOFF, S.BACKOFF, S.FATAL]
