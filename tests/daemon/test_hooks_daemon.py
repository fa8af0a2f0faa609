"""Event hooks under a real `dropsited up`: command hooks get the event JSON on stdin and
in DROPSITED_* variables, filters choose, a hanging hook is killed at its timeout and
counted while tasks keep flowing, URL hooks POST to a stub server on 127.0.0.1 (headers
from ${VAR}, a 500 retried, a server that keeps failing given up), agent events."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from harness import TEST_ARGS, daemon_session, gone, py, wait_until

# A hook that appends its stdin (one JSON line) and two variables to a file.
RECORD = ("import json, os, sys; event = json.loads(sys.stdin.read()); "
          "event['env'] = {k: os.environ.get(k) for k in ('DROPSITED_EVENT', 'DROPSITED_TASK_ID',"
          " 'DROPSITED_HOOK', 'DROPSITED_SUMMARY')}; "
          "open(sys.argv[1], 'a').write(json.dumps(event) + '\\n')")
ECHO = py("import sys, json; t = json.load(sys.stdin); "
          "ask = t['context'].get('ask') and not t['context'].get('_feedback_response'); "
          "print(json.dumps({'_dropsite': {'status': 'feedback', 'question': 'ok?'}} "
          "if ask else {'ok': t['title']}))")


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    with daemon_session(tmp_path) as make:
        def run(on: list[dict], agents: list[dict], env: dict | None = None):
            manifest = tmp_path / "agents.yaml"
            doc = {"workspace": "ws", "on": on, "agents": agents}
            manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
            return make(None, *TEST_ARGS, manifest=manifest, env=env)
        yield run


def recorder(path: Path, **keys: object) -> dict:
    return {"command": [sys.executable, "-c", RECORD, str(path)], "timeout": "5s", **keys}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_command_hooks_get_done_and_feedback_events_through_their_filters(tmp_path, start) -> None:
    every, billing = tmp_path / "every.jsonl", tmp_path / "billing.jsonl"
    d = start([recorder(every, name="every", events=["done", "feedback"]),
               recorder(billing, name="billing", events="done", tags=["billing"])],
              [{"name": "echo", "command": ECHO}])
    plain = d.drop("plain")
    bill = d.drop("bill", tags=("billing",))
    asks = d.drop("asks", context={"ask": True})
    wait_until(lambda: len(lines(every)) == 3, 15, "three events", daemon=d)
    got = {e["task_id"]: e for e in lines(every)}
    assert got[plain]["event"] == "done" and got[plain]["result"] == {"ok": "plain"}
    assert got[plain]["agent"] == "echo" and got[plain]["folder"] == "done"
    assert got[plain]["env"] == {"DROPSITED_EVENT": "done", "DROPSITED_TASK_ID": plain,
                                 "DROPSITED_HOOK": "every",
                                 "DROPSITED_SUMMARY": got[plain]["summary"]}
    assert got[asks]["event"] == "feedback" and got[asks]["question"] == "ok?"
    assert got[asks]["summary"].endswith("by echo asks: ok?")
    assert got[bill]["task"]["tags"] == ["billing"]
    wait_until(lambda: len(lines(billing)) == 1, 10, "the billing hook", daemon=d)
    assert lines(billing)[0]["task_id"] == bill  # the tag filter kept the others out
    def counted() -> dict | None:
        hooks = json.loads(d.cli("status", str(d.ws), "--json").stdout)["daemon"].get("hooks")
        return hooks if hooks and hooks["ok"] == 4 else None

    hooks = wait_until(counted, 10, "hook counters in the status", daemon=d)
    assert hooks["hooks"]["every"]["ok"] == 3 and hooks["failed"] == 0
    assert d.stop() == 0


def test_a_hanging_hook_is_killed_at_its_timeout_and_counted_while_tasks_flow(
        tmp_path, start) -> None:
    pids = tmp_path / "pids"
    hang = {"name": "hang", "events": ["done"], "timeout": "300ms", "command": [
        "sh", "-c", f"echo $$ >> {pids}; exec sleep 60"]}
    d = start([hang], [{"name": "echo", "command": ECHO, "concurrency": 2}])
    ids = [d.drop(f"t{i}") for i in range(6)]
    for task_id in ids:  # all six finish while the hook hangs, one 300 ms run at a time
        d.wait_in(task_id, "done", timeout=10)
    record = wait_until(lambda: (h := d.daemon_record().get("hooks")) and h["runs"] == 6 and h,
                        20, "six runs counted", daemon=d)
    assert record["timed_out"] == 6 and record["failed"] == 6 and record["ok"] == 0
    assert "timed out after 0.3s; killed" in record["hooks"]["hang"]["last_error"]
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 6 and all(gone(pid) for pid in started)  # killed, not left
    out = d.cli("status", str(d.ws)).stdout
    assert "hooks: ok 0  failed 6  timed out 6" in out, out
    assert "hang: failed 6  timed out 6" in out, out
    assert d.stop() == 0


def test_an_agent_going_fatal_runs_its_agent_hook(tmp_path, start) -> None:
    events = tmp_path / "agent.jsonl"
    crash = {"name": "crash", "mode": "worker", "command": py("import sys; sys.exit(3)"),
             "start_seconds": 0.2, "backoff": 0.05, "give_up": {"failures": 2, "window": 60},
             "on": [recorder(events, events=["fatal", "restart"])]}
    d = start([], [crash, {"name": "echo", "command": ECHO}])
    got = wait_until(lambda: (e := lines(events)) and e[-1]["event"] == "fatal" and e,
                     15, "the fatal event", daemon=d)
    assert [e["event"] for e in got] == ["restart", "fatal"]
    assert all(e["agent"] == "crash" and e["env"]["DROPSITED_HOOK"] == "crash.on[0]" for e in got)
    assert "3" in got[-1]["last_error"] and got[-1]["reason"]
    assert d.stop() == 0


class _Stub(BaseHTTPRequestHandler):
    """Answers POSTs with the next status of `statuses` (then 200) and keeps each request."""

    server: ThreadingHTTPServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state = self.server.state
        with state["lock"]:
            state["requests"].append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(body)})
            plan = state["statuses"].get(self.path, [])
            status = plan.pop(0) if plan else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[dict]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.state = {"lock": threading.Lock(), "requests": [], "statuses": {}}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", **server.state}
    server.shutdown()
    server.server_close()


def test_webhooks_post_with_headers_from_the_environment_retry_and_give_up(
        tmp_path, start, stub) -> None:
    stub["statuses"].update({"/flaky": [500], "/down": [500] * 10})
    quick = {"timeout": "2s", "backoff": {"initial": "50ms", "max": "100ms"}}
    d = start([{"name": "flaky", "events": "done", "url": stub["url"] + "/flaky",
                "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}, **quick},
               {"name": "down", "events": "done", "url": stub["url"] + "/down", "retries": 2,
                **quick}],
              [{"name": "echo", "command": ECHO}], env={"HOOK_TOKEN": "t0ken"})
    task_id = d.drop("post me")
    record = wait_until(lambda: (h := d.daemon_record().get("hooks")) and h["runs"] == 2 and h,
                        15, "both hooks done", daemon=d)
    flaky = [r for r in stub["requests"] if r["path"] == "/flaky"]
    assert len(flaky) == 2  # a 500, then the retry that succeeded
    assert all(r["headers"]["Authorization"] == "Bearer t0ken" for r in flaky)
    assert flaky[-1]["body"]["event"] == "done" and flaky[-1]["body"]["task_id"] == task_id
    assert flaky[-1]["headers"]["Content-Type"] == "application/json"
    assert (record["hooks"]["flaky"]["ok"], record["hooks"]["flaky"]["retries"]) == (1, 1)
    assert len([r for r in stub["requests"] if r["path"] == "/down"]) == 3  # 1 + 2 retries
    down = record["hooks"]["down"]
    assert (down["failed"], down["retries"], down["last_error"]) == (1, 2, "HTTP 500 "
                                                                     "Internal Server Error")
    assert d.folder_of(task_id) == "done"  # the task never noticed
    assert d.stop() == 0
