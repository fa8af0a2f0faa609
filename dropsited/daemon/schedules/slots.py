"""When a schedule is due: pure functions of (schedule, last slot run, now).

No clock, no I/O: the daemon passes `time.time()`, the tests a fake clock, so
catch-up, overlap, month ends and DST changes are tested without sleeping.

Slots are instants (seconds since the epoch). A cron schedule's slots are the
expression's times in its time zone (croniter does the calendar); an `every:`
schedule's slots are the multiples of the interval since the epoch, so they are the
same after a restart and on every host. Across DST changes each local wall-clock time
runs at most once: in the hour that repeats (autumn) a time already passed is not run
again, and a time that does not exist (spring) runs at the first moment after the gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

CATCH_UP = ("none", "one")
SHORTHANDS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
COUNT_LIMIT = 1000  # missed slots counted for the log, at most (a year of `* * * * *` is 525600)


@dataclass(frozen=True)
class When:
    """The timing part of a schedule: a cron expression in a zone, or a fixed interval."""

    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    catch_up: str = "one"
    skip_if_running: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do now: `action` is "drop" (slot `slot`), "skip" (slot `slot` is consumed
    without a drop: the previous run is still going), or "wait" (nothing is due).
    `missed` counts slots passed over without a drop (daemon down, catch_up), capped at
    COUNT_LIMIT; `next_slot` is the first slot after now, for the loop's wake-up."""

    action: str
    slot: float | None
    missed: int
    next_slot: float


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a 5-field cron expression or a known @shorthand; None if it is."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() in SHORTHANDS:
            return None
        return f"unknown shorthand {text!r} (use one of {', '.join(SHORTHANDS)})"
    fields = text.split()
    if len(fields) != 5:
        return (f"expected 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(fields)}")
    if not croniter.is_valid(text):
        return "not a valid cron expression"
    try:  # is_valid accepts some expressions that never match (February 30th)
        croniter(text, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(float)
    except Exception as exc:  # croniter raises several types for impossible dates
        return f"never matches ({exc})"
    return None


def zone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone this host knows; None if it is."""
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        return f"unknown time zone {name!r} ({type(exc).__name__}; an IANA name like " \
               "Europe/Berlin, America/New_York or UTC)"
    return None


def next_slot(when: When, after: float) -> float:
    """The first slot strictly after `after`."""
    if when.every is not None:
        return (math.floor(after / when.every) + 1) * when.every
    zone = ZoneInfo(when.tz)
    it = croniter(when.cron.strip(), datetime.fromtimestamp(after, zone))
    for _ in range(10):  # a repeated hour holds at most a few repeats
        candidate = it.get_next(datetime)
        if not _repeated_wall_time(candidate, zone):
            return candidate.timestamp()
    return candidate.timestamp()


def latest_slot(when: When, now: float) -> float:
    """The last slot at or before `now`."""
    if when.every is not None:
        return math.floor(now / when.every) * when.every
    zone = ZoneInfo(when.tz)
    it = croniter(when.cron.strip(), datetime.fromtimestamp(now, zone))
    if croniter.match(when.cron.strip(), datetime.fromtimestamp(now, zone)) and \
            now == math.floor(now / 60) * 60:
        return now  # croniter's get_prev is strictly before
    for _ in range(10):
        candidate = it.get_prev(datetime)
        if not _repeated_wall_time(candidate, zone):
            return candidate.timestamp()
    return candidate.timestamp()


def _repeated_wall_time(moment: datetime, zone: ZoneInfo) -> bool:
    """True for the second occurrence of a wall-clock time (the hour repeated in autumn)."""
    wall = moment.astimezone(zone).replace(tzinfo=None)
    first = wall.replace(fold=0, tzinfo=zone)
    second = wall.replace(fold=1, tzinfo=zone)
    return first.utcoffset() != second.utcoffset() and \
        moment.utcoffset() == second.utcoffset()


def count_slots(when: When, after: float, until: float, limit: int = COUNT_LIMIT) -> int:
    """How many slots lie in (after, until], counted up to `limit`."""
    if when.every is not None:
        return int(min(limit, max(0, math.floor(until / when.every)
                                  - math.floor(after / when.every))))
    n, t = 0, after
    while n < limit:
        t = next_slot(when, t)
        if t > until:
            break
        n += 1
    return n


def late_grace(when: When, slot: float) -> float:
    """How late a slot may still be dropped with catch_up none: half its period, at most
    a minute (a loop turn or a slow disk is not a missed run; a daemon down is)."""
    return min(60.0, (next_slot(when, slot) - slot) / 2)


def decide(when: When, last: float | None, now: float, previous_running: bool = False) -> Decision:
    """What the loop does now, given the last slot run (or the time the schedule was first
    seen; None: never seen, so nothing is owed and the first run is the next slot).

    catch_up one: if any slots passed since `last`, the latest one is dropped now, once,
    and the others count as missed. catch_up none: the latest slot is dropped only if it
    is on time (within `late_grace`), else every passed slot is missed.
    skip_if_running with the previous run unfinished turns a drop into a skip.
    """
    upcoming = next_slot(when, now)
    if last is None:
        return Decision("wait", None, 0, upcoming)
    due = latest_slot(when, now)
    if due <= last:
        return Decision("wait", None, 0, upcoming)
    passed = count_slots(when, last, now)
    if when.catch_up == "none" and now - due > late_grace(when, due):
        return Decision("wait", due, passed, upcoming)
    if when.skip_if_running and previous_running:
        return Decision("skip", due, max(0, passed - 1), upcoming)
    return Decision("drop", due, max(0, passed - 1), upcoming)
