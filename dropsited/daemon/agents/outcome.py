"""The agent contract as pure functions: what an exit status or a reply line means.

exec agents: exit 0 is done (stdout is the result), 75 (EX_TEMPFAIL) is
"later, without using an attempt", anything else is a failed attempt.
Either mode may ask for human feedback or block the task with a reply
object (see docs/PROTOCOL.md, "The agent contract").
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from ..supervision.exits import EX_TEMPFAIL, exit_details, exit_text

RESERVED_KEY = "_dropsite"
STDERR_TAIL_LINES = 20
MAX_RESULT_TEXT = 64 * 1024


class Kind(enum.Enum):
    """What an agent said about its task; the values are the reply's `status` words."""

    DONE = "done"  # finished: the result goes with it to done/
    TEMPFAIL = "tempfail"  # later, without using an attempt (exit 75)
    FAIL = "fail"  # a failed attempt: retried with backoff, or failed/
    FEEDBACK = "feedback"  # a question for a human: feedback/
    BLOCK = "block"  # waiting on something outside the queue: blocked/


# Other words agents use for a status, as the reference page's examples do.
_SYNONYMS = {"failed": Kind.FAIL, "error": Kind.FAIL, "retry": Kind.TEMPFAIL,
             "blocked": Kind.BLOCK}


@dataclass(frozen=True)
class Outcome:
    """What should happen to the task after an agent handled it."""

    kind: Kind
    result: dict | None = None
    error: str = ""
    question: Any = None
    details: dict = field(default_factory=dict)


def stderr_tail(stderr: bytes, lines: int = STDERR_TAIL_LINES) -> str:
    text = stderr.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])


def from_exit(returncode: int, stdout: bytes, stderr: bytes, timed_out: bool = False,
              timeout: float | None = None) -> Outcome:
    """Map one exec run to an Outcome (Popen's negative returncode means a signal)."""
    tail = stderr_tail(stderr)
    if timed_out:
        return timed_out_after(timeout, stderr=tail)
    if returncode == 0:
        return from_stdout(stdout)
    if returncode == EX_TEMPFAIL:
        return Outcome(Kind.TEMPFAIL, error=tail or "agent asked to retry later (exit 75)",
                       details={"exit_code": returncode})
    last = tail.splitlines()[-1] if tail else ""
    return Outcome(Kind.FAIL, error=exit_text(returncode, last),
                   details={**exit_details(returncode), "stderr": tail})


def timed_out_after(seconds: float | None, stderr: str | None = None) -> Outcome:
    """A task past its `timeout`, an exec process's or a worker's: a failed attempt."""
    details = {"reason": "timeout"} if stderr is None else {"reason": "timeout", "stderr": stderr}
    return Outcome(Kind.FAIL, error=f"timeout: killed after {seconds:g}s", details=details)


def from_stdout(stdout: bytes) -> Outcome:
    """exit 0: a JSON object is the result as is; other text is wrapped; `_dropsite` is a reply."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        return Outcome(Kind.DONE, result={})
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        reply = value.get(RESERVED_KEY)
        if isinstance(reply, dict):
            return from_reply(reply)
        return Outcome(Kind.DONE, result=value)
    if len(text) > MAX_RESULT_TEXT:
        return Outcome(Kind.DONE, result={"output": text[:MAX_RESULT_TEXT], "truncated": True})
    return Outcome(Kind.DONE, result={"output": text})


def from_reply(reply: dict) -> Outcome:
    """A reply object (worker line, or `_dropsite` in exec stdout) to an Outcome.

    Without a `status`, the whole object (less `id`) is the result of a done task.
    """
    status = reply.get("status")
    kind = _kind_of(status)
    if status is None or kind is Kind.DONE and "result" not in reply:
        return Outcome(Kind.DONE, result={k: v for k, v in reply.items() if k not in ("id", "status")})
    if kind is Kind.DONE:
        result = reply.get("result")
        return Outcome(Kind.DONE, result=result if isinstance(result, dict) or result is None
                       else {"value": result})
    if kind is Kind.FAIL:
        return Outcome(Kind.FAIL, error=str(reply.get("error") or "agent reported failure"))
    if kind is Kind.TEMPFAIL:
        return Outcome(Kind.TEMPFAIL, error=str(reply.get("error") or "agent asked to retry later"))
    if kind is Kind.FEEDBACK:
        # The request keeps every field the agent sent (question, draft, options...),
        # the shape of the reference page's request_feedback(task, {...}).
        request = {k: v for k, v in reply.items() if k not in ("id", "status")}
        if set(request) == {"question"}:
            request = request["question"]
        return Outcome(Kind.FEEDBACK, question=request)
    if kind is Kind.BLOCK:
        return Outcome(Kind.BLOCK, error=str(reply.get("reason") or "blocked by agent"))
    return Outcome(Kind.FAIL, error=f"agent replied with unknown status {str(status)[:40]!r}")


def _kind_of(status: Any) -> Kind | None:
    """The Kind a reply's `status` names; None for anything else (a number, a list...)."""
    if not isinstance(status, str):
        return None
    try:
        return Kind(status)
    except ValueError:
        return _SYNONYMS.get(status)


def parse_reply_line(line: bytes) -> dict | None:
    """One worker stdout line as a JSON object; None when it is not one (it gets logged)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None

