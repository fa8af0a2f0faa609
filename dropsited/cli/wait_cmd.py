"""`dropsited wait`: block until tasks finish, so a shell can call an agent like a function.

Exit status: 0 every task done (or in a folder named by --until), 1 any in failed/,
2 bad input (an invalid or unknown id, no workspace), 124 timed out (as timeout(1)).
`dropsited drop --wait` ends with the same function.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..protocol import DropSite, Task, TaskNotFound, WaitTimeout
from ..protocol.names import check_task_id
from ..protocol.waiting import OPTIONAL_STOPS, wait_for
from .common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    clip,
    emit_json,
    fail,
    open_workspace,
    workspace_command,
)

EXIT_TIMEOUT = 124


def register(group: click.Group) -> None:
    @workspace_command(group, "wait")
    @click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
    @timeout_option
    @until_option
    @click.option("--json", "as_json", is_flag=True,
                  help="Print each finished task as a JSON document, in the order given.")
    def wait(workspace: Path, task_ids: tuple[str, ...], timeout: float | None,
             until: str | None, as_json: bool) -> None:
        """Wait until each task is in done/ or failed/ and print its result.

        Reacts within milliseconds (file-system events, with a poll as a safety net on
        network file systems). Exit 0: all done; 1: any failed; 2: bad input;
        124: timed out (the tasks that did finish are printed first).

        \b
        Example:
          dropsited wait ./workspace 01a2...e8 --timeout 60
          dropsited wait ./workspace "$id" --json | jq .result
          dropsited wait ./workspace "$id" --until feedback,blocked
        """
        ids = [check_task_id(t) for t in task_ids]
        folders = parse_until(until)
        finish(open_workspace(workspace), ids, timeout, folders, as_json)


def timeout_option(func):
    return click.option("--timeout", type=click.FloatRange(min=0), default=None,
                        metavar="SECONDS", help="Give up after this long (exit 124). "
                        "Default: wait for ever.")(func)


def until_option(func):
    return click.option("--until", default=None, metavar="FOLDERS",
                        help=f"Also stop when a task reaches one of these folders "
                             f"(comma-separated: {', '.join(OPTIONAL_STOPS)}).")(func)


def parse_until(text: str | None) -> tuple[str, ...]:
    """The --until folders, or a one-line error naming the bad one (exit 2)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if name not in OPTIONAL_STOPS:
            fail(f"--until: {name!r} is not one of {', '.join(OPTIONAL_STOPS)} "
                 "(done and failed always end a wait)")
    return tuple(dict.fromkeys(names))


def finish(ds: DropSite, ids: list[str], timeout: float | None, until: tuple[str, ...],
           as_json: bool) -> None:
    """Wait, print what arrived, exit with the status of the module docstring."""
    try:
        found = wait_for(ds, ids, timeout, until)
    except TaskNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    except WaitTimeout as exc:
        _report(exc.finished, as_json)
        fail(str(exc), EXIT_TIMEOUT)
    except KeyboardInterrupt:
        sys.exit(130)
    _report(found, as_json)
    if any(folder == "failed" for folder, _ in found.values()):
        sys.exit(EXIT_FAILURE)


def _report(found: dict[str, tuple[str, Task]], as_json: bool) -> None:
    for task_id, (folder, task) in found.items():
        if as_json:
            emit_json(task.to_dict())
        else:
            click.echo(f"{task_id}  {folder}  {outcome(folder, task)}".rstrip())


def outcome(folder: str, task: Task) -> str:
    """One line: the result of a done task, the error, question or reason of the others."""
    if folder == "done":
        return json.dumps(task.result, ensure_ascii=False, default=str)
    last = task.history[-1] if task.history else {}
    if folder == "failed":
        return f"error: {clip(str(last.get('error', '?')), 200)}"
    if folder == "blocked":
        return f"reason: {clip(str(last.get('reason', '?')), 200)}"
    request = task.context.get("_feedback_request")
    question = request.get("question") if isinstance(request, dict) else request
    return f"question: {clip(str(question), 200)}"
