"""Schedules' decisions on a fake clock: cron in time zones, DST, month ends, catch-up,
overlap, the state file and the manifest's checks. No sleeping, no daemon."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import FakeClock

from dropsited import DropSite
from dropsited.daemon.manifest import ManifestError, parse_manifest
from dropsited.daemon.manifest.spec import ScheduleSpec, TaskTemplate
from dropsited.daemon.schedules import state
from dropsited.daemon.schedules.runner import Scheduler
from dropsited.daemon.schedules.slots import When, decide, latest_slot, next_slot

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def local(ts: float) -> str:
    return datetime.fromtimestamp(ts, BERLIN).strftime("%Y-%m-%d %H:%M%z")


def slots(when: When, start: float, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = next_slot(when, t)
        out.append(local(t))
    return out


def test_daily_runs_once_across_the_autumn_fold_and_after_the_spring_gap():
    daily = When(cron="30 2 * * *", tz="Europe/Berlin")
    assert slots(daily, at(2024, 10, 26, 12), 3) == [
        "2024-10-27 02:30+0200", "2024-10-28 02:30+0100", "2024-10-29 02:30+0100"]
    # 02:30 does not exist on 31 March: it runs at the first moment after the gap
    assert slots(daily, at(2024, 3, 30, 12), 2) == ["2024-03-31 03:00+0200",
                                                    "2024-04-01 02:30+0200"]


def test_half_hourly_does_not_repeat_wall_times_in_the_fold():
    half = When(cron="*/30 * * * *", tz="Europe/Berlin")
    assert slots(half, at(2024, 10, 27, 1, 15), 5) == [
        "2024-10-27 01:30+0200", "2024-10-27 02:00+0200", "2024-10-27 02:30+0200",
        "2024-10-27 03:00+0100", "2024-10-27 03:30+0100"]


def test_month_ends_and_shorthands():
    utc = ZoneInfo("UTC")
    last_days = When(cron="0 0 31 * *")
    got = [datetime.fromtimestamp(t, utc).strftime("%m-%d") for t in
           _walk(last_days, at(2024, 1, 1, tz=utc), 4)]
    assert got == ["01-31", "03-31", "05-31", "07-31"]  # months without a 31st are skipped
    monthly = When(cron="@monthly", tz="America/New_York")
    first = next_slot(monthly, at(2024, 2, 15, tz=utc))
    assert datetime.fromtimestamp(first, ZoneInfo("America/New_York")).strftime(
        "%Y-%m-%d %H:%M") == "2024-03-01 00:00"


def _walk(when: When, start: float, n: int) -> list[float]:
    out, t = [], start
    for _ in range(n):
        t = next_slot(when, t)
        out.append(t)
    return out


def test_every_slots_are_epoch_multiples_and_latest_slot_is_inclusive():
    every = When(every=600)
    assert next_slot(every, 1200) == 1800 and next_slot(every, 1199) == 1200
    assert latest_slot(every, 1200) == 1200 and latest_slot(every, 1799) == 1200
    hourly = When(cron="@hourly")
    assert latest_slot(hourly, 7200) == 7200 and latest_slot(hourly, 7201) == 7200


def test_never_seen_waits_for_the_next_slot():
    d = decide(When(every=60), None, 1000)
    assert (d.action, d.slot, d.next_slot) == ("wait", None, 1020)


def test_catch_up_one_drops_the_latest_missed_slot_once():
    every = When(every=60, catch_up="one")
    d = decide(every, 600, 600 + 10 * 60 + 5)  # down for ten slots
    assert (d.action, d.slot, d.missed) == ("drop", 1200, 9)
    again = decide(every, d.slot, 1205)  # the same turn after the state was written
    assert again.action == "wait" and again.slot is None


def test_catch_up_none_skips_to_the_next_slot_but_runs_an_on_time_slot():
    every = When(every=60, catch_up="none")
    late = decide(every, 600, 600 + 10 * 60 + 45)
    assert (late.action, late.slot, late.missed) == ("wait", 1200, 10)
    on_time = decide(every, 600, 660.5)
    assert (on_time.action, on_time.slot) == ("drop", 660)


def test_skip_if_running_turns_a_drop_into_a_skip():
    when = When(every=60, skip_if_running=True)
    assert decide(when, 600, 661, previous_running=True).action == "skip"
    assert decide(when, 600, 661, previous_running=False).action == "drop"
    assert decide(When(every=60), 600, 661, previous_running=True).action == "drop"


def test_missed_slots_are_counted_with_a_bound():
    minutely = When(cron="* * * * *")
    d = decide(minutely, 0, 365 * 86400)  # a year down: counted up to the limit only
    assert d.action == "drop" and d.missed == 999


def _spec(name: str = "tick", **kw: object) -> ScheduleSpec:
    return ScheduleSpec(name=name, task=TaskTemplate(title="report", tags=("x",)), **kw)


def test_scheduler_drops_once_per_slot_across_restarts(tmp_path: Path):
    ds = DropSite(tmp_path / "ws", durable=False)
    clock = FakeClock(start=1_000_000.0)
    spec = _spec(every=60.0)
    Scheduler(ds, (spec,), clock=clock)
    assert ds.list_tasks("inbox") == []  # first seen: nothing owed
    clock.advance(61)
    sched = Scheduler(ds, (spec,), clock=clock)  # a restart after the slot
    assert len(ds.list_tasks("inbox")) == 1
    sched.tick()
    Scheduler(ds, (spec,), clock=clock)  # and another, in the same slot
    tasks = ds.list_tasks("inbox")
    assert len(tasks) == 1 and tasks[0].id == state.slot_task_id("tick", 1_000_020.0)
    assert tasks[0].history[0]["schedule"] == "tick"


def test_a_crash_between_drop_and_state_write_does_not_drop_twice(tmp_path: Path):
    ds = DropSite(tmp_path / "ws", durable=False)
    clock = FakeClock(start=1_000_000.0)
    spec = _spec(every=60.0)
    Scheduler(ds, (spec,), clock=clock)
    saved = ds.store.read(".dropsited", "schedules.json", 1 << 20)
    clock.advance(61)
    Scheduler(ds, (spec,), clock=clock)
    ds.store.write_record(".dropsited", "schedules.json", saved)  # the write never happened
    Scheduler(ds, (spec,), clock=clock)
    assert len(ds.list_tasks("inbox")) == 1


def test_a_corrupt_state_file_means_no_last_run_never_a_double_drop(tmp_path: Path, caplog):
    ds = DropSite(tmp_path / "ws", durable=False)
    clock = FakeClock(start=1_000_000.0)
    spec = _spec(every=60.0)
    Scheduler(ds, (spec,), clock=clock)
    clock.advance(61)
    Scheduler(ds, (spec,), clock=clock)
    ds.store.write_record(".dropsited", "schedules.json", b"{not json\xff")
    sched = Scheduler(ds, (spec,), clock=clock)
    assert "schedules.json: not JSON" in caplog.text
    assert len(ds.list_tasks("inbox")) == 1
    clock.advance(60)
    sched.tick()
    assert len(ds.list_tasks("inbox")) == 2  # and it runs on at the next slot


def test_skip_if_running_keeps_one_run_at_a_time(tmp_path: Path):
    ds = DropSite(tmp_path / "ws", durable=False)
    clock = FakeClock(start=1_000_000.0)
    sched = Scheduler(ds, (_spec(every=60.0, skip_if_running=True),), clock=clock)
    clock.advance(21)
    sched.tick()
    clock.advance(60)
    sched.tick()  # the first is still in inbox/: skipped
    assert len(ds.list_tasks("inbox")) == 1
    assert state.load(ds.store)[0]["tick"].action == "skipped"
    first = ds.list_tasks("inbox")[0]
    ds.complete(ds.claim("w", first.id), {})
    clock.advance(60)
    sched.tick()
    assert len(ds.list_tasks("inbox")) == 1 and ds.list_tasks("inbox")[0].id != first.id


BASE = "workspace: ws\nagents:\n  - name: a\n    command: [\"true\"]\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("schedules:\n  s:\n    cron: '0 6 * *'\n    task: {title: t}\n",
     "m.yaml:7: schedules.s.cron: expected 5 fields"),
    ("schedules:\n  s:\n    cron: '61 * * * *'\n    task: {title: t}\n",
     "m.yaml:7: schedules.s.cron: not a valid cron expression"),
    ("schedules:\n  s:\n    cron: '@reboot'\n    task: {title: t}\n",
     "m.yaml:7: schedules.s.cron: unknown shorthand"),
    ("schedules:\n  s:\n    cron: '@daily'\n    tz: Mars/Olympus\n    task: {title: t}\n",
     "m.yaml:8: schedules.s.tz: unknown time zone 'Mars/Olympus'"),
    ("schedules:\n  s:\n    every: 10m\n    cron: '@daily'\n    task: {title: t}\n",
     "m.yaml:7: schedules.s: set exactly one of 'cron'"),
    ("schedules:\n  s:\n    every: 0.5s\n    task: {title: t}\n",
     "m.yaml:7: schedules.s.every: must be >= 1"),
    ("schedules:\n  a/b:\n    every: 1m\n    task: {title: t}\n", "m.yaml:6: schedules['a/b']: agent name 'a/b'"),
    ("schedules:\n  s:\n    every: 1m\n    catch_up: all\n    task: {title: t}\n",
     "m.yaml:8: schedules.s.catch_up: expected one of 'none', 'one'"),
    ("retention: {done: soon}\n", "m.yaml:5: retention.done: expected seconds"),
    ("retention: {compress: true}\n", "m.yaml:5: retention: set 'done' or 'failed'"),
])
def test_check_names_the_line_of_a_bad_schedule_or_retention(text: str, expected: str):
    with pytest.raises(ManifestError) as err:
        parse_manifest(BASE + text, "m.yaml")
    assert any(line.startswith(expected) for line in err.value.errors), err.value.errors


def test_a_good_manifest_parses_both_forms():
    text = BASE + ("schedules:\n  nightly:\n    cron: '0 6 * * 1-5'\n    tz: Europe/Berlin\n"
                   "    task: {title: Report, tags: [report], context: {n: 1}, priority: 2}\n"
                   "retention: {done: 7d, failed: 30d, interval: 10m}\n")
    m = parse_manifest(text, "m.yaml")
    assert m.schedules[0].name == "nightly" and m.schedules[0].task.context == {"n": 1}
    assert m.retention.done == 7 * 86400 and m.retention.failed == 30 * 86400
    listed = parse_manifest(BASE + "schedules:\n  - name: x\n    every: 1h\n"
                            "    task: {title: t}\n", "m.yaml")
    assert listed.schedules[0].every == 3600.0
