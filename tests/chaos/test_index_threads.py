"""Regression (found by the 20,000-task chaos soak): the daemon finishes tasks in runner
threads, and DropSite.fail/release then told the inbox index about the requeued task from
that thread while the main loop was walking the same index: the daemon died with
"RuntimeError: dictionary changed size during iteration" in next_ready_time().

Here the main thread does what the daemon loop does between events (next_ready_time,
claim_next) while runner threads fail and release tasks it claimed earlier.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from dropsited import DropSite, TaskBuilder


def test_runner_threads_requeueing_while_the_loop_walks_the_index(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws", durable=False, retry_base=60)
    for i in range(3000):
        ds.submit(TaskBuilder(f"t{i}", "test").max_retries(5).build())
    held = [ds.claim_next("agent") for _ in range(2400)]
    assert all(held)
    errors: list[BaseException] = []

    def runner(tasks: list) -> None:
        try:
            for n, task in enumerate(tasks):
                if n % 2:
                    ds.release(task)
                else:
                    ds.fail(task, "again")  # requeued with a not-before time
        except BaseException as exc:  # reported below
            errors.append(exc)
    runners = [threading.Thread(target=runner, args=(held[i::3],)) for i in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a loaded machine does
    try:
        for thread in runners:
            thread.start()
        while any(t.is_alive() for t in runners) and not errors:
            ds.inbox_index().next_ready_time()
            ds.claim_next("other", tags=["none-such"], refresh=False)
    except RuntimeError as exc:
        errors.append(exc)
    finally:
        sys.setswitchinterval(interval)
        for thread in runners:
            thread.join()
    assert not errors, repr(errors[0])
    assert sorted(ds.stats().items()) == sorted(
        {"inbox": 3000, "active": 0, "done": 0, "failed": 0, "blocked": 0, "feedback": 0}.items())
    assert len(ds.inbox_index()) == 3000  # the index saw every requeue
