"""The JSON a task file may hold, applied alike when it is read and when it is written.

A workspace is shared ground: any program may drop a file into it, and an agent's
result ends up in one. So the reader is total (any byte sequence is either a task or
an `InvalidTask` whose message names the problem, never another exception), and the
writer refuses exactly what the reader would refuse, before anything reaches disk.

The rules, in PROTOCOL.md §3:
- UTF-8 text, no lone surrogates (`"\\ud800"` decodes in Python but cannot be
  written back as UTF-8, and other readers refuse it);
- no `NaN`, `Infinity` or a number that overflows to one (`1e400`);
- integers within int64: -(2**63 - 1) .. 2**63 - 1;
- at most MAX_DEPTH levels of nesting (Python's own encoder recurses, so a document
  that parses but nests 900 deep would fail when it is written back).

Checking every value of every file on the claim path would cost more than the parse,
so cheap byte-level tests (bytes.count, one regex) decide whether the walk is needed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import InvalidTask

MAX_DEPTH = 100
MAX_INT = 2**63 - 1

_LONG_DIGITS = re.compile(rb"\d{19}")  # the shortest run that can exceed MAX_INT
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(token: str) -> None:
    raise InvalidTask(f"{token} is not a JSON number other readers accept")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidTask(f"number {text[:40]} is out of range (it would be infinite)")
    return value


def loads(raw: bytes) -> Any:
    """Parse a task document by the rules above; InvalidTask says why it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTask(f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidTask:
        raise
    except json.JSONDecodeError as exc:
        msg = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg  # "Invalid control character at"
        raise InvalidTask(f"not valid JSON: {msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidTask(f"JSON nested too deeply (over {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # an integer of more than 4,300 digits, say
        raise InvalidTask(f"not valid JSON: {_one_line(exc)}") from None
    if (_LONG_DIGITS.search(raw) or _SURROGATE_ESCAPE.search(raw)
            or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH):
        check_values(data)
    return data


def dumps(value: Any, indent: int | None = 2) -> bytes:
    """Encode a task document, refusing what `loads` would refuse; InvalidTask says why.

    `default=str` keeps 0.1.0's behaviour for values JSON has no type for (a datetime
    in a Python handler's result becomes its text).
    """
    try:
        text = json.dumps(value, indent=indent, default=str, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise InvalidTask(f"nested too deeply (over {MAX_DEPTH} levels)") from None
    except ValueError:
        raise InvalidTask("NaN or Infinity in the task: not JSON other readers accept") from None
    try:
        out = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTask("a string holds a lone surrogate: not valid UTF-8") from None
    if _LONG_DIGITS.search(out) or out.count(b"[") + out.count(b"{") > MAX_DEPTH:
        check_values(value)
    return out


def check_values(data: Any) -> None:
    """Walk a decoded document (iteratively: depth must not cost stack) and apply the rules."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidTask(f"nested too deeply (over {MAX_DEPTH} levels)")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key)
                stack.append((item, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_string(value)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -MAX_INT <= value <= MAX_INT:
                raise InvalidTask(f"integer {str(value)[:24]}... is outside the int64 range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidTask("NaN or Infinity in the task: not JSON other readers accept")


def _check_string(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidTask("a string holds a lone surrogate: not valid UTF-8") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."
