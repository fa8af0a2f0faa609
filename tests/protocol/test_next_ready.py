"""FolderIndex.next_ready_time: the daemon's wake-up for delayed tasks."""

from __future__ import annotations

from pathlib import Path

from dropsited import DropSite, TaskBuilder


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_next_ready_time_is_the_earliest_future_not_before(tmp_path: Path) -> None:
    clock = Clock()
    ds = DropSite(tmp_path / "ws", durable=False, clock=clock)
    for delay in (30, 10, 20):
        ds.submit(TaskBuilder(f"in {delay}", "me").delay(delay).build())
    ds.submit(TaskBuilder("now", "me").build())
    index = ds.inbox_index()
    index.refresh()
    assert index.next_ready_time() == clock.now + 10
    clock.now += 15  # the 10 s task is due: nothing to wake up for about it any more
    assert index.next_ready_time() == clock.now - 15 + 20
    clock.now += 100
    assert index.next_ready_time() is None  # all due: no busy wake-ups for tasks no agent takes


def test_a_claimed_delayed_task_no_longer_sets_the_wake_up(tmp_path: Path) -> None:
    clock = Clock()
    ds = DropSite(tmp_path / "ws", durable=False, clock=clock)
    ds.submit(TaskBuilder("soon", "me").delay(5).build())
    later = ds.submit(TaskBuilder("later", "me").delay(50).build())
    index = ds.inbox_index()
    index.refresh()
    clock.now += 6
    task = ds.claim_next("a")
    assert task is not None and task.title == "soon"
    assert index.next_ready_time() == clock.now - 6 + 50
    assert later
