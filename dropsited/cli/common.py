"""What every verb shares: finding the workspace, one-line errors, tables and --json."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..protocol import DropSite, DropSiteError, InvalidName, NotAWorkspace, TaskNotFound
from ..protocol.errors import InvalidTask
from ..protocol.task import Task, parse_iso

ENV_WORKSPACE = "DROPSITE_WORKSPACE"
EXIT_USAGE = 2
EXIT_FAILURE = 1


# Characters a terminal acts on: C0 and C1 controls, DEL, and the Unicode line
# separators and bidirectional overrides that reorder or split what is shown.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                       "\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f"
                                 "\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                          "\u2066-\u2069]")


def _shown(char: str) -> str:
    code = ord(char)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: object) -> str:
    """Untrusted text for one line of a terminal: every control character (ESC, CR, a
    newline, bidi overrides) shown as an escape, so task text cannot move the cursor,
    recolour the screen or forge a row."""
    return _CONTROLS.sub(lambda m: _shown(m.group()), str(text))


def visible_block(text: object) -> str:
    """Untrusted text of several lines: newlines (and tabs) kept, other controls escaped."""
    return _CONTROLS_BUT_LINES.sub(lambda m: _shown(m.group()), str(text))


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print one line to stderr and exit: the only way a verb reports an error."""
    click.echo(f"error: {visible(message)}", err=True)
    sys.exit(code)


def handle_errors(func: Callable) -> Callable:
    """Turn library exceptions into one-line errors and exit codes, never tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InvalidName, InvalidTask, NotAWorkspace) as exc:
            fail(str(exc), EXIT_USAGE)
        except TaskNotFound as exc:
            fail(str(exc), EXIT_FAILURE)
        except DropSiteError as exc:
            fail(str(exc), EXIT_FAILURE)
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_FAILURE)

    return wrapper


class WorkspaceCommand(click.Command):
    """A command whose first positional argument, the workspace, may come from $DROPSITE_WORKSPACE.

    When the variable is set and one positional argument is missing, it is
    taken as the workspace, so `dropsited list done` works like
    `dropsited list "$DROPSITE_WORKSPACE" done`.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        env = os.environ.get(ENV_WORKSPACE)
        if env and not any(a in ("-h", "--help") for a in args) and self._workspace_missing(args):
            args = [env, *args]
        return super().parse_args(ctx, args)

    def _workspace_missing(self, args: list[str]) -> bool:
        arguments = [p for p in self.params if isinstance(p, click.Argument)]
        required = sum(1 for p in arguments if p.required)
        given = _positionals(self, args)
        if len(given) == required - 1:
            return True
        # With optional arguments (claim [TASK_ID]) or a list (wait ID...) the count is
        # ambiguous: a first argument that is no directory is not the workspace.
        ambiguous = len(given) < len(arguments) or any(p.nargs == -1 for p in arguments)
        return bool(given) and ambiguous and not os.path.isdir(given[0])


def _positionals(command: click.Command, args: Sequence[str]) -> list[str]:
    takes_value = set()
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and not param.count:
            takes_value.update(param.opts)
    found, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--":
            continue
        elif arg.startswith("-") and arg != "-":
            skip = arg in takes_value
        else:
            found.append(arg)
    return found


def workspace_command(group: click.Group, name: str, **kwargs: Any) -> Callable:
    """Register a verb whose first argument is WORKSPACE (or $DROPSITE_WORKSPACE)."""

    def decorator(func: Callable) -> click.Command:
        func = handle_errors(func)
        func = click.argument("workspace", type=click.Path(file_okay=False, path_type=Path))(func)
        return group.command(name, cls=WorkspaceCommand, **kwargs)(func)

    return decorator


def open_workspace(path: Path, durable: bool = True) -> DropSite:
    """Open an existing workspace; never creates one (only `init` does)."""
    if not path.exists():
        raise NotAWorkspace(f"{path}: no such directory; create a workspace with: dropsited init {path}")
    return DropSite(path, durable=durable, create=False)


def _no_nan(token: str) -> None:
    raise ValueError(f"{token} is not JSON (other readers, Node's among them, reject it)")


def parse_json(text: str, option: str) -> object:
    """Strict JSON (no NaN/Infinity) or a one-line error, exit 2, nothing written."""
    try:
        return json.loads(text, parse_constant=_no_nan)
    except json.JSONDecodeError as exc:
        fail(f"{option}: not valid JSON ({exc.msg} at column {exc.colno}); nothing was written")
    except (ValueError, RecursionError) as exc:
        fail(f"{option}: {exc}; nothing was written")


def parse_json_object(text: str, option: str) -> dict:
    value = parse_json(text, option)
    if not isinstance(value, dict):
        fail(f"{option}: expected a JSON object, got {type(value).__name__}; nothing was written")
    return value


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def emit_json(value: Any) -> None:
    """JSON as is, except that C1 controls and bidi overrides (which json leaves raw with
    ensure_ascii=False) are written as \\u escapes: still the same JSON, safe on a terminal."""
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    rows = [[visible(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    return "\n".join(lines)


def short_time(iso: str | None) -> str:
    moment = parse_iso(iso) if iso else None
    if moment is None:
        return str(iso or "")
    return datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: str, width: int = 40) -> str:
    text = visible(" ".join(str(text).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def task_row(task: Task) -> list[str]:
    return [task.id, f"P{task.priority}", clip(task.title), task.assigned_to or "-",
            ",".join(task.tags) or "-", task.status, short_time(task.updated_at)]


TASK_HEADERS = ("id", "pri", "title", "assigned", "tags", "status", "updated")
