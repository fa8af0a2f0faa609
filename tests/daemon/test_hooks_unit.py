"""Event hooks in process: the token bucket and the runner's bounds on a fake clock, the
payload and its filters, and the manifest's `on:` errors. The real daemon's hooks are
tests/daemon/test_hooks_daemon.py's."""

from __future__ import annotations

import threading

import pytest
from harness import FakeClock, wait_until

from dropsited.daemon.hooks import payload
from dropsited.daemon.hooks.command import Attempt
from dropsited.daemon.hooks.rate import TokenBucket
from dropsited.daemon.hooks.runner import HookRunner
from dropsited.daemon.manifest import HookSpec, ManifestError, parse_manifest
from dropsited.daemon.manifest.spec import Backoff, RateLimit
from dropsited.protocol import TaskBuilder

FAST = Backoff(initial=0.001, max=0.001, factor=1.0)


def hook(name: str = "h", events: tuple[str, ...] = ("done",), **keys: object) -> HookSpec:
    return HookSpec(name=name, events=events, command=("true",), backoff=FAST, **keys)


def done_event(tags: tuple[str, ...] = (), agent: str = "a", kind: str = "done",
               folder: str = "done") -> dict:
    task = TaskBuilder("Build it", "me").tag(*tags).build() if tags else \
        TaskBuilder("Build it", "me").build()
    return payload.task_event(kind, task, agent, folder, "/ws", error="")


# -- the rate limit ----------------------------------------------------------------------
def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock(100.0)
    bucket = TokenBucket(RateLimit(calls=3, per=60.0), clock())
    assert [bucket.take(clock()) for _ in range(4)] == [True, True, True, False]
    clock.advance(19.0)  # 3 per minute: one token every 20 s
    assert not bucket.take(clock())
    clock.advance(1.0)
    assert bucket.take(clock()) and not bucket.take(clock())
    clock.advance(3600.0)  # never more than the burst
    assert [bucket.take(clock()) for _ in range(4)] == [True, True, True, False]
    clock.advance(-50.0)  # a clock stepping back refills nothing
    assert not bucket.take(clock())


def test_runner_counts_events_over_the_rate_and_delivers_the_rest() -> None:
    clock = FakeClock(0.0)
    seen: list[str] = []
    runner = HookRunner((hook(rate=RateLimit(calls=2, per=10.0)),),
                        lambda spec, event: seen.append(event["task_id"]) or Attempt(True),
                        clock=clock)
    events = [done_event() for _ in range(5)]
    for event in events:
        runner.emit(event)
    wait_until(runner.idle, 5, "deliveries")
    assert seen == [events[0]["task_id"], events[1]["task_id"]]
    clock.advance(5.0)  # one token back
    runner.emit(events[2])
    wait_until(lambda: len(seen) == 3, 5, "third delivery")
    stats = runner.stats()["h"]
    assert stats["rate_limited"] == 3 and stats["ok"] == 3 and stats["failed"] == 0
    runner.close(1.0)


# -- the queue bound -----------------------------------------------------------------------
def test_a_full_queue_drops_its_oldest_events_and_counts_them() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def deliver(spec: HookSpec, event: dict) -> Attempt:
        gate.wait(5)
        seen.append(event["task_id"])
        return Attempt(True)

    runner = HookRunner((hook(rate=RateLimit(calls=1000, per=1.0)),), deliver, queue_size=3)
    events = [done_event() for _ in range(8)]
    runner.emit(events[0])
    wait_until(lambda: runner.stats()["h"]["queued"] == 0, 5, "first event taken")
    for event in events[1:]:  # the first is in flight; 7 more into a queue of 3
        runner.emit(event)
    assert runner.stats()["h"]["dropped"] == 4 and runner.stats()["h"]["queued"] == 3
    gate.set()
    wait_until(runner.idle, 5, "deliveries")
    assert seen == [e["task_id"] for e in (events[0], *events[5:])]  # the newest kept
    runner.close(1.0)


def test_a_hanging_hook_holds_one_thread_and_the_others_keep_going() -> None:
    release = threading.Event()
    done: list[str] = []

    def deliver(spec: HookSpec, event: dict) -> Attempt:
        if spec.name == "slow":
            release.wait(5)
            return Attempt(False, "timed out after 0.1s; killed", timed_out=True)
        done.append(event["task_id"])
        return Attempt(True)

    runner = HookRunner((hook("slow"), hook("quick")), deliver, pool=2)
    for _ in range(5):
        runner.emit(done_event())
    wait_until(lambda: len(done) == 5, 5, "the quick hook's deliveries")
    release.set()
    wait_until(runner.idle, 5, "the slow hook's")
    slow = runner.stats()["slow"]
    assert slow["failed"] == 5 and slow["timed_out"] == 5 and slow["last_error"].startswith("timed")
    runner.close(1.0)


# -- retries -----------------------------------------------------------------------------------
def test_retries_until_success_and_gives_up_after_its_retries() -> None:
    answers = {"flaky": [Attempt(False, "HTTP 500"), Attempt(False, "HTTP 500"), Attempt(True)],
               "down": [Attempt(False, "HTTP 503")] * 10,
               "refused": [Attempt(False, "HTTP 404", retryable=False)] * 10}
    calls = {name: 0 for name in answers}

    def deliver(spec: HookSpec, event: dict) -> Attempt:
        calls[spec.name] += 1
        return answers[spec.name][calls[spec.name] - 1]

    specs = tuple(hook(name, retries=3) for name in answers)
    runner = HookRunner(specs, deliver)
    runner.emit(done_event())
    wait_until(runner.idle, 5, "deliveries")
    stats = runner.stats()
    assert calls == {"flaky": 3, "down": 4, "refused": 1}
    assert (stats["flaky"]["ok"], stats["flaky"]["retries"]) == (1, 2)
    assert (stats["down"]["failed"], stats["down"]["retries"]) == (1, 3)
    assert stats["down"]["last_error"] == "HTTP 503"
    assert (stats["refused"]["failed"], stats["refused"]["retries"]) == (1, 0)
    runner.close(1.0)


def test_close_drops_what_is_still_queued_and_counts_it() -> None:
    gate = threading.Event()
    runner = HookRunner((hook(),), lambda s, e: gate.wait(5) and Attempt(True))
    for _ in range(4):
        runner.emit(done_event())
    runner.close(0.05)
    gate.set()
    assert runner.stats()["h"]["dropped"] == 3
    runner.emit(done_event())  # after close: ignored
    assert runner.stats()["h"]["queued"] == 0


# -- the payload and the filters -------------------------------------------------------------
def test_filters_by_tag_agent_folder_and_the_hooks_own_agent() -> None:
    billing = done_event(("billing",), agent="coder")
    other = done_event(("misc",), agent="writer")
    retried = done_event(("billing",), kind="failed", folder="inbox")
    fatal = payload.agent_event("fatal", "coder", "/ws", {"reason": "5 failed starts"})
    quarantined = payload.quarantine_event({"file": "inbox/x.json", "error": "bad"}, "/ws")
    cases = {
        hook(tags=("billing",)): [billing],
        hook(agents=("writer",)): [other],
        hook(agent="coder", events=("done", "fatal")): [billing, fatal],
        hook(events=("failed",), folders=("failed",)): [],
        hook(events=("failed", "fatal"), folders=("failed",)): [fatal],
        hook(events=("quarantined", "fatal"), tags=("x",)): [fatal, quarantined],
        hook(events=("quarantined", "fatal"), agents=("coder",)): [fatal],
    }
    for spec, wanted in cases.items():
        got = [e for e in (billing, other, retried, fatal, quarantined) if payload.matches(spec, e)]
        assert got == wanted, spec


def test_payload_is_bounded_and_its_environment_carries_no_nul() -> None:
    task = TaskBuilder("T\x00itle " + "x" * 10_000, "me").tag("a", "b").build()
    task.result = {"text": "y" * 100_000}
    event = payload.task_event("done", task, "coder", "done", "/ws")
    assert event["result"]["_dropsited_omitted"].endswith(" bytes")
    assert len(event["task"]["title"]) == payload.MAX_TEXT
    env = payload.environment(event, "h")
    assert env["DROPSITED_TASK_TAGS"] == "a,b" and env["DROPSITED_EVENT"] == "done"
    assert all("\x00" not in v and len(v) <= payload.MAX_TEXT for v in env.values())
    feedback = TaskBuilder("Publish", "me").build()
    feedback.context["_feedback_request"] = {"question": "Send it?", "options": ["yes", "no"]}
    event = payload.task_event("feedback", feedback, "drafter", "feedback", "/ws")
    assert event["question"]["options"] == ["yes", "no"]
    assert event["summary"].endswith("by drafter asks: Send it?")


# -- the manifest ---------------------------------------------------------------------------
BASE = "workspace: ws\nagents:\n  - name: a\n    command: [cat]\n"


def test_hooks_are_named_by_place_and_scoped_to_their_agent(tmp_path) -> None:
    text = BASE + ("    on:\n      - {events: fatal, command: [x]}\n"
                   "on:\n  - {events: [done, feedback], command: echo, tags: t}\n"
                   "  - {name: chat, events: done, url: 'https://h.example/${TOKEN}',\n"
                   "     headers: {Authorization: 'Bearer ${TOKEN}'}}\n")
    manifest = parse_manifest(text, tmp_path / "agents.yaml", environ={"TOKEN": "s3cret"})
    names = [(h.name, h.agent) for h in manifest.hooks()]
    assert names == [("on[0]", None), ("chat", None), ("a.on[0]", "a")]
    chat = manifest.on[1]
    assert chat.url == "https://h.example/s3cret" and chat.headers == {
        "Authorization": "Bearer s3cret"}
    assert chat.retries == 3 and manifest.on[0].retries == 0  # the defaults by kind
    assert manifest.on[0].tags == ("t",) and manifest.on[0].argv() == ["/bin/sh", "-c", "echo"]
    shown = manifest.to_dict()["on"][1]
    assert "s3cret" not in str(shown)  # check --json does not print the secrets


@pytest.mark.parametrize(("hooks", "error"), [
    ("  - {events: dne, command: x}", "agents.yaml:6: on[0].events: expected one of done,"),
    ("  - {events: done}", "agents.yaml:6: on[0]: give exactly one of 'command'"),
    ("  - {events: done, url: 'file:///etc'}", "on[0].url: expected an http:// or https://"),
    ("  - {events: done, url: 'http://h', headers: {X: '${NOPE}'}}",
     "on[0].headers.X: undefined variable ${NOPE}"),
    ("  - {events: done, url: 'http://h', headers: {X: \"a\\nb\"}}",
     "on[0].headers.X: a header value cannot hold CR, LF or NUL"),
    ("  - {events: done, command: x, retries: 11}", "on[0].retries: must be at most 10"),
    ("  - {events: done, command: x, headers: {A: b}}", "on[0].headers: only applies to a 'url'"),
    ("  - {events: fatal, command: x, tags: [a]}", "on[0].tags: filters task events"),
    ("  - {events: done, command: x, rate: 0}", "on[0].rate: must be >= 1"),
    ("  - {name: 'a b', events: done, command: x}", "on[0].name: hook name 'a b' must be"),
])
def test_bad_hooks_are_one_line_errors_with_file_and_line(tmp_path, hooks: str, error: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(BASE + "on:\n" + hooks + "\n", tmp_path / "agents.yaml", environ={})
    assert any(error in line for line in caught.value.errors), caught.value.errors
