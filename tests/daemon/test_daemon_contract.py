"""The agent contract (issue 3 §2), each rule against a real daemon and real agent processes.

One daemon runs for the whole module with one agent per rule; every task is assigned to
the agent that shows the rule, so the tests do not disturb each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import RunningDaemon, agent, daemon_session, py, write_script

FAIL_SCRIPT = "import sys; print('first line'); print('boom: disk on fire', file=sys.stderr); sys.exit(3)"
TEMPFAIL_SCRIPT = """
import os, sys
marker = os.path.join(os.environ["MARKS"], os.environ["DROPSITE_TASK_ID"])
if not os.path.exists(marker):
    open(marker, "w").close()
    print("not now", file=sys.stderr)
    sys.exit(75)
print('{"second": true}')
"""
ARGV_SCRIPT = """
import json, os, sys
task = json.load(open(sys.argv[1]))
keys = ("DROPSITE_WORKSPACE", "DROPSITE_TASK_ID", "DROPSITE_TASK_FILE", "DROPSITE_AGENT")
print(json.dumps({"title": task["title"], "path": sys.argv[1],
                  "env": {k: os.environ.get(k) for k in keys}}))
"""
STDIN_SCRIPT = """
import json, sys
task = json.load(sys.stdin)
print(json.dumps({"seen": task["context"]["n"] * 2}))
"""
CHAIN_SCRIPT = """#!/bin/bash
set -e
child=$(dropsited drop "$DROPSITE_WORKSPACE" --from me --parent "$DROPSITE_TASK_ID" \\
        --to echoer --title "child of $DROPSITE_TASK_ID" -q)
echo "{\\"child\\": \\"$child\\"}"
"""
NODE_WORKER = """
// A DropSite worker: one task per line in, one reply per line out.
const readline = require("readline");
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const task = JSON.parse(line);
  const ctx = task.context || {};
  let reply;
  if (ctx.fail) {
    reply = { id: task.id, status: "fail", error: "asked to fail" };
  } else if (ctx.ask) {
    reply = { id: task.id, status: "feedback", question: ctx.ask, options: ["yes", "no"] };
  } else if (ctx.block) {
    reply = { id: task.id, status: "block", reason: ctx.block };
  } else if (ctx.noise) {
    console.log("just some chatter");
    reply = { id: task.id, status: "done", result: { upper: task.title.toUpperCase() } };
  } else {
    reply = { id: task.id, status: "done", result: { upper: task.title.toUpperCase(), pid: process.pid } };
  }
  process.stdout.write(JSON.stringify(reply) + "\\n");
});
"""


def _agents(tmp_path: Path) -> list[dict]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    chain = write_script(scripts / "chain.sh", CHAIN_SCRIPT)
    worker = write_script(scripts / "echo_worker.js", NODE_WORKER)
    return [
        agent("jsoner", "echo '{\"answer\": 42, \"nested\": {\"x\": [1, 2]}}'"),
        agent("texter", ["/bin/echo", "hello from bash"]),
        agent("stdiner", py(STDIN_SCRIPT)),
        agent("failer", py(FAIL_SCRIPT)),
        agent("tempfailer", py(TEMPFAIL_SCRIPT), env={"MARKS": str(marks)}),
        agent("sleeper", ["sleep", "30"], timeout="0.5s", stop_grace="0.2s"),
        agent("asker", py("import json; print(json.dumps({'_dropsite': {'status': 'feedback', "
                          "'question': 'Ship it?', 'options': ['yes', 'no']}}))")),
        agent("blocker", py("import json; print(json.dumps({'_dropsite': {'status': 'block', "
                            "'reason': 'needs the API key'}}))")),
        agent("argver", [sys.executable, "-c", ARGV_SCRIPT, "{task_file}"], input="argv",
              ),
        agent("chainer", [str(chain)]),
        agent("echoer", ["/bin/echo", "child done"]),
        agent("noder", ["/usr/bin/node", str(worker)], mode="worker", concurrency=2,
              start_seconds="0.1s"),
    ]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("contract")
    with daemon_session(tmp_path) as make:
        d = make(_agents(tmp_path))
        yield d
        assert d.stop() == 0, d.stderr()


def test_exit_0_with_a_json_object_is_the_result_as_is(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="jsoner"), "done")
    assert task["result"] == {"answer": 42, "nested": {"x": [1, 2]}}


def test_exit_0_with_plain_text_is_wrapped(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="texter"), "done")
    assert task["result"] == {"output": "hello from bash"}


def test_the_task_arrives_on_stdin(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="stdiner", context={"n": 21}), "done")
    assert task["result"] == {"seen": 42}


def test_exit_75_goes_back_to_the_inbox_without_using_an_attempt(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="tempfailer", max_retries=0), "done")
    assert task["result"] == {"second": True}
    assert task["retry_count"] == 0
    waits = [e for e in task["history"] if e.get("tempfail")]
    assert len(waits) == 1 and waits[0]["status"] == "inbox"


def test_other_exit_is_a_failed_attempt_with_status_and_stderr_then_failed(
        daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="failer", max_retries=2), "failed")
    assert task["retry_count"] == 3
    attempts = [e for e in task["history"] if e["status"] in ("retry", "failed")]
    assert [e["status"] for e in attempts] == ["retry", "retry", "failed"]
    for entry in attempts:
        assert entry["exit_code"] == 3
        assert "boom: disk on fire" in entry["stderr"]
        assert "exit status 3" in entry["error"]


def test_timeout_is_a_failed_attempt_with_reason_timeout(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="sleeper", max_retries=0), "failed")
    last = task["history"][-1]
    assert last["reason"] == "timeout"
    assert "timeout" in last["error"]


def test_feedback_reply_moves_the_task_to_feedback(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="asker"), "feedback")
    request = task["context"]["_feedback_request"]
    assert request == "Ship it?" or request.get("question") == "Ship it?"


def test_block_reply_moves_the_task_to_blocked_with_the_reason(daemon: RunningDaemon) -> None:
    task = daemon.wait_in(daemon.drop(to="blocker"), "blocked")
    assert task["history"][-1]["reason"] == "needs the API key"


def test_argv_input_and_the_task_environment(daemon: RunningDaemon) -> None:
    task_id = daemon.drop("argv please", to="argver")
    result = daemon.wait_in(task_id, "done")["result"]
    assert result["title"] == "argv please"
    assert Path(result["path"]).parent == daemon.ws / "active"
    assert Path(result["path"]).name.startswith(task_id + "~argver~")
    assert result["env"] == {"DROPSITE_WORKSPACE": str(daemon.ws), "DROPSITE_TASK_ID": task_id,
                             "DROPSITE_TASK_FILE": result["path"], "DROPSITE_AGENT": "argver"}


def test_chaining_with_dropsited_drop(daemon: RunningDaemon) -> None:
    parent_id = daemon.drop(to="chainer")
    child_id = daemon.wait_in(parent_id, "done")["result"]["child"]
    child = daemon.wait_in(child_id, "done")
    assert child["parent_id"] == parent_id
    assert child["result"] == {"output": "child done"}


def test_node_worker_json_lines(daemon: RunningDaemon) -> None:
    ids = [daemon.drop(f"task {i}", to="noder") for i in range(6)]
    results = [daemon.wait_in(i, "done")["result"] for i in ids]
    assert [r["upper"] for r in results] == [f"TASK {i}" for i in range(6)]
    assert len({r["pid"] for r in results}) <= 2  # long-lived: no process per task
    noisy = daemon.wait_in(daemon.drop("noise", to="noder", context={"noise": 1}), "done")
    assert noisy["result"] == {"upper": "NOISE"}
    failed = daemon.wait_in(daemon.drop(to="noder", context={"fail": 1}, max_retries=0), "failed")
    assert failed["history"][-1]["error"] == "asked to fail"
    asked = daemon.wait_in(daemon.drop(to="noder", context={"ask": "Merge?"}), "feedback")
    assert asked["context"]["_feedback_request"] == {"question": "Merge?", "options": ["yes", "no"]}
    blocked = daemon.wait_in(daemon.drop(to="noder", context={"block": "no creds"}), "blocked")
    assert blocked["history"][-1]["reason"] == "no creds"
    assert "just some chatter" in daemon.log_text("noder")


def test_agent_records_count_tasks(daemon: RunningDaemon) -> None:
    daemon.wait_in(daemon.drop(to="texter"), "done")
    daemon.wait_agent("texter", lambda r: r["tasks_done"] >= 1, what="tasks_done counted")
    daemon.wait_in(daemon.drop(to="failer", max_retries=0), "failed")
    record = daemon.wait_agent("failer", lambda r: r["tasks_failed"] >= 1 and r["last_error"],
                               what="tasks_failed and last_error")
    assert "exit status 3" in record["last_error"]


def test_exit_75_is_not_counted_as_a_failure_of_the_agent() -> None:
    """settle() reports a tempfail as LATER, which the agent's record does not count."""
    from dropsited.daemon.agents.agent_group import AgentGroup
    from dropsited.daemon.agents.settle import Settled

    group = AgentGroup.__new__(AgentGroup)
    group.running, group.tasks_done, group.tasks_failed, group.last_error = {"t": None}, 0, 0, ""
    group.finished("t", Settled.LATER, "busy, try later")
    group.running["r"] = None
    group.finished("r", Settled.RELEASED, "")  # released on drain
    assert (group.tasks_failed, group.last_error) == (0, "")
    group.running["f"] = None
    group.finished("f", Settled.RETRY, "exit status 3: boom")
    assert (group.tasks_failed, group.last_error) == (1, "exit status 3: boom")
