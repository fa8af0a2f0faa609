"""outcome.py, the agent contract as pure functions: what an exit, a stdout or a reply
line means for the task (docs/AGENTS.md). No process and no file: bytes in, Outcome out."""

from __future__ import annotations

import json
import signal

import pytest

from dropsited.daemon.agents.outcome import (
    MAX_RESULT_TEXT,
    STDERR_TAIL_LINES,
    Kind,
    Outcome,
    from_exit,
    from_reply,
    from_stdout,
    parse_reply_line,
    stderr_tail,
    timed_out_after,
)
from dropsited.daemon.supervision.exits import (
    EX_CONFIG,
    EX_TEMPFAIL,
    exit_details,
    exit_text,
    signal_name,
)


# -- exec: the exit status ------------------------------------------------------------
def test_exit_0_with_a_json_object_is_that_result() -> None:
    assert from_exit(0, b'{"words": 3}\n', b"") == Outcome(Kind.DONE, result={"words": 3})


@pytest.mark.parametrize("stdout, result", [
    (b"", {}),
    (b"  \n\n", {}),
    (b"hello\n", {"output": "hello"}),
    (b"[1, 2]", {"output": "[1, 2]"}),  # JSON, but not an object
    (b'"text"', {"output": '"text"'}),
    (b"\xff\xfe not utf-8", {"output": "\ufffd\ufffd not utf-8"}),
    (b"[" * 100_000, {"output": "[" * MAX_RESULT_TEXT, "truncated": True}),  # too deep for json
])
def test_exit_0_with_other_output(stdout: bytes, result: dict) -> None:
    assert from_exit(0, stdout, b"") == Outcome(Kind.DONE, result=result)


def test_long_plain_output_is_cut_and_marked() -> None:
    out = from_exit(0, b"x" * (MAX_RESULT_TEXT + 10), b"")
    assert out.result == {"output": "x" * MAX_RESULT_TEXT, "truncated": True}


def test_exit_75_is_later_without_an_attempt() -> None:
    assert from_exit(EX_TEMPFAIL, b"", b"rate limited\n") == Outcome(
        Kind.TEMPFAIL, error="rate limited", details={"exit_code": 75})
    assert from_exit(EX_TEMPFAIL, b"", b"").error == "agent asked to retry later (exit 75)"


def test_another_exit_status_is_a_failed_attempt_with_the_stderr_tail() -> None:
    err = b"".join(b"line %d\n" % i for i in range(30))
    out = from_exit(3, b"ignored", err)
    assert out.kind is Kind.FAIL
    assert out.error == "exit status 3: line 29"
    assert out.details["exit_code"] == 3
    assert out.details["stderr"].splitlines() == [f"line {i}" for i in range(10, 30)]


def test_exit_78_is_a_failed_attempt_for_the_task() -> None:
    """EX_CONFIG makes a long-lived agent FATAL (restart_policy); for one exec task it
    is a failed attempt like any other status."""
    assert from_exit(EX_CONFIG, b"", b"").kind is Kind.FAIL


def test_death_by_a_signal_names_the_signal() -> None:
    out = from_exit(-signal.SIGKILL, b"", b"")
    assert out == Outcome(Kind.FAIL, error="killed by SIGKILL",
                          details={"signal": "SIGKILL", "stderr": ""})
    assert from_exit(-99, b"", b"").error == "killed by signal 99"


def test_a_timeout_wins_over_the_exit_status() -> None:
    out = from_exit(0, b'{"done": true}', b"slow\n", timed_out=True, timeout=2.5)
    assert out == Outcome(Kind.FAIL, error="timeout: killed after 2.5s",
                          details={"reason": "timeout", "stderr": "slow"})


def test_the_timeout_outcome_is_one_for_exec_and_worker_agents() -> None:
    assert timed_out_after(30.0) == Outcome(Kind.FAIL, error="timeout: killed after 30s",
                                            details={"reason": "timeout"})
    assert timed_out_after(30.0, stderr="") == from_exit(-9, b"", b"", True, 30.0)


def test_stderr_tail_keeps_the_last_lines() -> None:
    text = b"".join(b"%d\n" % i for i in range(50))
    assert stderr_tail(text).splitlines() == [str(i) for i in range(30, 50)]
    assert len(stderr_tail(text).splitlines()) == STDERR_TAIL_LINES
    assert stderr_tail(b"") == ""


# -- exec: a reply object on stdout -----------------------------------------------------
def test_a_reply_in_exec_stdout_asks_for_feedback() -> None:
    stdout = json.dumps({"_dropsite": {"status": "feedback", "question": "Send?",
                                       "options": ["yes", "no"]}}).encode()
    assert from_stdout(stdout) == Outcome(Kind.FEEDBACK,
                                          question={"question": "Send?", "options": ["yes", "no"]})


def test_a_reply_in_exec_stdout_blocks() -> None:
    stdout = b'{"_dropsite": {"status": "block", "reason": "needs a key"}}'
    assert from_stdout(stdout) == Outcome(Kind.BLOCK, error="needs a key")


def test_a_reserved_key_that_is_no_object_is_part_of_the_result() -> None:
    assert from_stdout(b'{"_dropsite": 1, "x": 2}') == Outcome(
        Kind.DONE, result={"_dropsite": 1, "x": 2})


# -- worker replies ---------------------------------------------------------------------
@pytest.mark.parametrize("reply, expected", [
    ({"id": "t", "status": "done", "result": {"a": 1}}, Outcome(Kind.DONE, result={"a": 1})),
    ({"id": "t", "status": "done", "result": [1]}, Outcome(Kind.DONE, result={"value": [1]})),
    ({"id": "t", "status": "done", "result": None}, Outcome(Kind.DONE, result=None)),
    ({"id": "t", "status": "done", "n": 2}, Outcome(Kind.DONE, result={"n": 2})),
    ({"id": "t", "n": 2}, Outcome(Kind.DONE, result={"n": 2})),
    ({"status": "fail", "error": "boom"}, Outcome(Kind.FAIL, error="boom")),
    ({"status": "failed"}, Outcome(Kind.FAIL, error="agent reported failure")),
    ({"status": "error", "error": 7}, Outcome(Kind.FAIL, error="7")),
    ({"status": "tempfail"}, Outcome(Kind.TEMPFAIL, error="agent asked to retry later")),
    ({"status": "retry", "error": "busy"}, Outcome(Kind.TEMPFAIL, error="busy")),
    ({"status": "feedback", "question": "ok?"}, Outcome(Kind.FEEDBACK, question="ok?")),
    ({"status": "feedback", "question": "ok?", "draft": "d"},
     Outcome(Kind.FEEDBACK, question={"question": "ok?", "draft": "d"})),
    ({"status": "block", "reason": "r"}, Outcome(Kind.BLOCK, error="r")),
    ({"status": "blocked"}, Outcome(Kind.BLOCK, error="blocked by agent")),
])
def test_reply_statuses(reply: dict, expected: Outcome) -> None:
    assert from_reply(reply) == expected


@pytest.mark.parametrize("status", ["DONE", "finished", 1, ["done"], {"a": 1}, True, "x" * 100])
def test_an_unknown_status_is_a_failed_attempt_naming_it(status: object) -> None:
    out = from_reply({"status": status})
    assert out.kind is Kind.FAIL
    assert out.error.startswith("agent replied with unknown status ")
    assert len(out.error) < 100


@pytest.mark.parametrize("line, value", [
    (b'{"id": "t"}', {"id": "t"}),
    (b"not json", None),
    (b"[1, 2]", None),
    (b"", None),
    (b"[" * 100_000, None),  # too deep: refused, not a RecursionError
])
def test_parse_reply_line(line: bytes, value: object) -> None:
    assert parse_reply_line(line) == value


def test_a_non_finite_reply_is_parsed_here_and_refused_when_stored() -> None:
    """NaN is valid for Python's json; settle() turns it into a failed attempt (unstorable)."""
    parsed = parse_reply_line(b'{"status": "done", "result": {"a": NaN}}')
    assert from_reply(parsed).kind is Kind.DONE


# -- the text of an exit: one for tasks, agent records and logs -------------------------
@pytest.mark.parametrize("returncode, last, text", [
    (3, "", "exit status 3"),
    (3, "boom", "exit status 3: boom"),
    (0, "", "exit status 0"),
    (-signal.SIGTERM, "", "killed by SIGTERM"),
    (-200, "", "killed by signal 200"),
    (None, "", "exit status unknown"),
])
def test_exit_text(returncode: int | None, last: str, text: str) -> None:
    assert exit_text(returncode, last) == text


def test_exit_details_and_signal_names() -> None:
    assert exit_details(2) == {"exit_code": 2}
    assert exit_details(-signal.SIGSEGV) == {"signal": "SIGSEGV"}
    assert exit_details(None) == {"exit_code": None}
    assert signal_name(signal.SIGKILL) == "SIGKILL"
