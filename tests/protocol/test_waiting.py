"""DropSite.wait and protocol.waiting: real child processes move the tasks, with
file-system events and with polling alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dropsited import DropSite, TaskBuilder
from dropsited.protocol import DropSiteError, InvalidName, TaskNotFound, WaitTimeout
from dropsited.protocol.waiting import FolderWatch, wait_for

FINISH = textwrap.dedent("""
    import sys, time
    from dropsited import DropSite
    ws, task_id, how = sys.argv[1:4]
    time.sleep(0.2)
    ds = DropSite(ws, durable=False)
    task = ds.claim("child", task_id)
    if how == "done":
        ds.complete(task, {"by": "child"})
    elif how == "fail":
        ds.fail(task, "child gave up")
    elif how == "feedback":
        ds.request_feedback(task, {"question": "ok?"})
    else:
        ds.block(task, "needs keys")
""")


def finish_later(ws: Path, task_id: str, how: str = "done", env: dict | None = None) -> subprocess.Popen:
    """A separate process that claims the task after 0.2 s and finishes it `how`."""
    return subprocess.Popen([sys.executable, "-c", FINISH, str(ws), task_id, how],
                            env={**os.environ, **(env or {})})


@pytest.fixture
def ds(tmp_path: Path) -> DropSite:
    return DropSite(tmp_path / "ws", durable=False)


def drop(ds: DropSite) -> str:
    return ds.submit(TaskBuilder("waited for", "test").build())


@pytest.mark.parametrize("use_events", [True, False], ids=["events", "poll"])
def test_wait_returns_the_task_another_process_finished(ds: DropSite, use_events: bool) -> None:
    task_id = drop(ds)
    child = finish_later(ds.workspace, task_id)
    found = wait_for(ds, [task_id], timeout=30, use_events=use_events)
    assert child.wait(timeout=10) == 0
    folder, task = found[task_id]
    assert (folder, task.status, task.result) == ("done", "done", {"by": "child"})


def test_the_library_method_returns_the_task(ds: DropSite) -> None:
    task_id = drop(ds)
    child = finish_later(ds.workspace, task_id)
    task = ds.wait(task_id, timeout=30)
    child.wait(timeout=10)
    assert task.id == task_id and task.result == {"by": "child"}


def test_events_are_used_when_watchdog_is_there(ds: DropSite) -> None:
    with FolderWatch(ds.workspace, ["done"], ["x.json"]) as watch:
        assert watch.mode == "events"
    with FolderWatch(ds.workspace, ["done"], ["x.json"], use_events=False) as watch:
        assert watch.mode == "poll"


def test_a_failed_task_ends_the_wait(ds: DropSite) -> None:
    task_id = ds.submit(TaskBuilder("doomed", "test").max_retries(0).build())
    child = finish_later(ds.workspace, task_id, "fail")
    folder, task = wait_for(ds, [task_id], timeout=30)[task_id]
    child.wait(timeout=10)
    assert folder == "failed" and task.history[-1]["error"] == "child gave up"


@pytest.mark.parametrize("how,folder", [("feedback", "feedback"), ("block", "blocked")])
def test_until_stops_at_feedback_and_blocked(ds: DropSite, how: str, folder: str) -> None:
    task_id = drop(ds)
    child = finish_later(ds.workspace, task_id, how)
    found = ds.wait(task_id, timeout=30, until=(folder,))
    child.wait(timeout=10)
    assert found.status == folder


def test_feedback_does_not_end_a_plain_wait(ds: DropSite) -> None:
    task_id = drop(ds)
    child = finish_later(ds.workspace, task_id, "feedback")
    child.wait(timeout=10)
    with pytest.raises(WaitTimeout) as caught:
        ds.wait(task_id, timeout=0.5)
    assert caught.value.pending == {task_id: "feedback"}


def test_timeout_is_a_timeout_error_that_says_where_the_tasks_are(ds: DropSite) -> None:
    first, second = drop(ds), drop(ds)
    ds.complete(ds.claim("me", first), {"n": 1})
    with pytest.raises(TimeoutError) as caught:
        wait_for(ds, [first, second], timeout=0.3)
    error = caught.value
    assert isinstance(error, WaitTimeout) and isinstance(error, DropSiteError)
    assert error.pending == {second: "inbox"}
    assert list(error.finished) == [first] and error.finished[first][0] == "done"
    assert f"{second} (in inbox/)" in str(error)


def test_bad_ids_and_folders_are_refused(ds: DropSite) -> None:
    with pytest.raises(InvalidName):
        ds.wait("../escape")
    with pytest.raises(TaskNotFound, match="no task nosuchtask"):
        ds.wait("nosuchtask", timeout=5)
    with pytest.raises(DropSiteError, match="until: 'active' is not one of feedback, blocked"):
        ds.wait(drop(ds), timeout=1, until=("active",))


def test_a_task_deleted_while_waited_for_is_reported(ds: DropSite) -> None:
    task_id = drop(ds)
    threading.Timer(0.2, (ds.workspace / "inbox" / f"{task_id}.json").unlink).start()
    with pytest.raises(TaskNotFound, match="vanished"):
        ds.wait(task_id, timeout=30)


def test_cancel_and_progress(ds: DropSite) -> None:
    task_id = drop(ds)
    cancel = threading.Event()
    seen: list[dict] = []

    def progress(pending: dict, elapsed: float) -> None:
        seen.append(dict(pending))
        if len(seen) == 2:
            cancel.set()

    with pytest.raises(WaitTimeout, match="wait cancelled"):
        wait_for(ds, [task_id], on_progress=progress, progress_every=0.1, cancel=cancel)
    assert seen == [{task_id: "inbox"}, {task_id: "inbox"}]


def test_the_core_waits_without_watchdog(ds: DropSite, tmp_path: Path) -> None:
    """The protocol core is standard library only: with watchdog unimportable it polls."""
    stub = tmp_path / "stub" / "watchdog"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no watchdog here')\n")
    task_id = drop(ds)
    code = textwrap.dedent(f"""
        import sys
        from dropsited.protocol import DropSite
        from dropsited.protocol.waiting import FolderWatch
        ds = DropSite({str(ds.workspace)!r}, durable=False)
        with FolderWatch(ds.workspace, ["done"], ["x.json"]) as watch:
            print(watch.mode)
        print(ds.wait({task_id!r}, timeout=30).result)
        print("watchdog" in sys.modules and sys.modules["watchdog"] is not None)
    """)
    env = {**os.environ, "PYTHONPATH": str(stub.parent)}
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=env)
    finish_later(ds.workspace, task_id).wait(timeout=10)
    out, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == 0
    assert out.split("\n")[:3] == ["poll", "{'by': 'child'}", "False"]
