"""An exec agent's pipes (dropsited/daemon/exec_pipes.py): output reaches the log while
the task runs, big tasks go in whole, and an agent that ignores its stdin is fine."""

from __future__ import annotations

from harness import agent, wait_until

TALK_THEN_WAIT = "echo 'step 1: fetched'; echo 'warning: slow model' >&2; sleep 3; echo '{\"ok\": true}'"


def test_output_reaches_the_log_while_the_task_runs(run_daemon) -> None:
    d = run_daemon([agent("talker", TALK_THEN_WAIT)])
    task_id = d.drop(to="talker")
    d.wait_in(task_id, "active")
    wait_until(lambda: "step 1: fetched" in d.log_text("talker")
               and "warning: slow model" in d.log_text("talker"), 2.0, "output in the log")
    assert d.folder_of(task_id) == "active"  # still running: the lines came live
    follow = d.cli("logs", "talker", "-w", str(d.ws), "-n", "5")
    assert "step 1: fetched" in follow.stdout, follow.stderr
    done = d.wait_in(task_id, "done")
    assert done["result"] == {"output": 'step 1: fetched\n{"ok": true}'}  # text, not JSON
    assert d.stop() == 0


def test_a_task_bigger_than_a_pipe_buffer_goes_in_whole(run_daemon) -> None:
    d = run_daemon([agent("echo", ["cat"]), agent("deaf", "echo '{}'")])
    blob = "x" * 300_000  # several times the 64 KiB a pipe holds
    echoed = d.drop(to="echo", context={"blob": blob})
    ignored = d.drop(to="deaf", context={"blob": blob})
    task = d.wait_in(echoed, "done")
    assert task["result"]["context"]["blob"] == blob  # cat gave back the task it read
    assert d.wait_in(ignored, "done")["result"] == {}  # never read stdin: no harm
    assert d.stop() == 0


def test_stdout_and_stderr_never_share_a_line_of_the_log(run_daemon) -> None:
    d = run_daemon([agent("terse", "printf 'no newline'; printf 'err no newline' >&2")])
    for _ in range(2):
        d.wait_in(d.drop(to="terse"), "done")
    lines = d.log_text("terse").splitlines()
    assert lines.count("no newline") == 2 and lines.count("err no newline") == 2, lines
    assert d.stop() == 0


def test_a_log_that_cannot_be_written_does_not_run_the_task_twice(run_daemon, tmp_path) -> None:
    """Regression: a log write error while the agent ran (disk full) abandoned the task
    with its process alive, and the daemon requeued and ran it again beside it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = ('cat > /dev/null; echo working; touch "$MARKS/$$"; sleep 1.5; echo \'{"ok": 1}\'')
    d = run_daemon([agent("a", script, log="/dev/full", env={"MARKS": str(marks)})])
    task = d.wait_in(d.drop(to="a"), "done", timeout=15)
    assert task["result"] == {"output": 'working\n{"ok": 1}'}
    assert len(list(marks.iterdir())) == 1  # one run
    assert d.stop() == 0, d.stderr()
    assert d.stderr().count("cannot write agent log /dev/full") == 1
