"""Verbs that act on a running daemon: stop, start, restart, scale, cancel.

Each drops a control request into the workspace (docs/PROTOCOL.md §14), waits for the
daemon's reply and prints it. Exit 0: done; 1: refused (unknown agent, finished task,
this user may not write the workspace); 2: bad input; 3: no daemon runs on the workspace;
124: no reply within --timeout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..protocol import DropSite, DropSiteError
from ..protocol.control import MAX_SCALE, ControlError, Request, Requester
from ..protocol.holder import this_host
from ..protocol.names import check_task_id
from .common import emit_json, fail, handle_errors, open_workspace, visible, workspace_command
from .daemon_cmds import EXIT_NOT_RUNNING, _resolve_workspace

EXIT_REFUSED = 1
EXIT_TIMEOUT = 124  # as timeout(1) and `dropsited wait`
DEFAULT_TIMEOUT = 30.0


def register(group: click.Group) -> None:
    for command in (stop, start, restart, scale):
        group.add_command(command)
    _cancel(group)


def _agent_options(func):
    """What the agent verbs share: where the workspace is, how long to wait, --json."""
    for option in reversed((
        click.option("-w", "--workspace", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="The workspace (default: the manifest's, or "
                     "$DROPSITE_WORKSPACE)."),
        click.option("-c", "--config", type=click.Path(path_type=Path), default=None,
                     help="Find the workspace through this manifest."),
        _timeout_option,
        click.option("--json", "as_json", is_flag=True, help="Print the daemon's reply as JSON."),
    )):
        func = option(func)
    return func


_timeout_option = click.option(
    "--timeout", type=click.FloatRange(0.1, 86400), default=DEFAULT_TIMEOUT, show_default=True,
    metavar="SECONDS", help="How long to wait for the daemon's reply.")


@click.command()
@click.argument("agent")
@_agent_options
@handle_errors
def stop(agent: str, workspace: Path | None, config: Path | None, timeout: float,
         as_json: bool) -> None:
    """Stop an agent (or `all`) and keep it stopped, across reloads, until `start`.

    Its processes get their stop signal, then SIGKILL after stop_grace; the tasks they
    held go back to inbox/. `status` shows it as stopped, and by whom.

    \b
    Example:
      dropsited stop coder -w ./workspace
      dropsited stop all -c agents.yaml
    """
    _ask(_workspace(workspace, config), "stop", timeout, as_json, agent=agent)


@click.command()
@click.argument("agent")
@_agent_options
@handle_errors
def start(agent: str, workspace: Path | None, config: Path | None, timeout: float,
          as_json: bool) -> None:
    """Start an agent (or `all`) that was stopped, or that is EXITED or FATAL.

    \b
    Example:
      dropsited start coder -w ./workspace
    """
    _ask(_workspace(workspace, config), "start", timeout, as_json, agent=agent)


@click.command()
@click.argument("agent")
@_agent_options
@handle_errors
def restart(agent: str, workspace: Path | None, config: Path | None, timeout: float,
            as_json: bool) -> None:
    """Stop an agent's processes (stop signal, grace, SIGKILL) and start them again.

    Tasks they held go back to inbox/, no attempt used. A stopped agent starts.

    \b
    Example:
      dropsited restart coder -w ./workspace
      dropsited restart all -c agents.yaml --timeout 60
    """
    _ask(_workspace(workspace, config), "restart", timeout, as_json, agent=agent)


@click.command()
@click.argument("agent")
@click.argument("count", metavar="N", type=click.IntRange(1, MAX_SCALE))
@_agent_options
@handle_errors
def scale(agent: str, count: int, workspace: Path | None, config: Path | None, timeout: float,
          as_json: bool) -> None:
    """Run N processes of an agent (exec agents: N tasks at once).

    It holds until the daemon restarts or a reload changes that agent in the manifest
    (a reload that leaves the agent as it was keeps N). Scaling down stops workers only
    between tasks. A stopped agent stays stopped.

    \b
    Example:
      dropsited scale shouter 4 -w ./workspace
    """
    _ask(_workspace(workspace, config), "scale", timeout, as_json, agent=agent, count=count)


def _cancel(group: click.Group) -> None:
    @workspace_command(group, "cancel")
    @click.argument("task_id")
    @click.option("--requeue", is_flag=True, help="Put it back in inbox/ instead of failed/.")
    @_timeout_option
    @click.option("--json", "as_json", is_flag=True, help="Print the daemon's reply as JSON.")
    def cancel(workspace: Path, task_id: str, requeue: bool, timeout: float,
               as_json: bool) -> None:
        """Cancel a task: a running one's process is stopped (stop signal, grace, SIGKILL).

        The task goes to failed/ with the error `cancelled by <user>` (or back to inbox/
        with --requeue), recorded in its history. A worker's instance is restarted. A task
        not running (inbox/, feedback/, blocked/) is simply moved, daemon or not.

        \b
        Example:
          dropsited cancel ./workspace 0190a2...e8
          dropsited cancel ./workspace 0190a2...e8 --requeue
        """
        check_task_id(task_id)
        ds = open_workspace(workspace)
        found = ds.locate(task_id)
        if found is None:
            fail(f"no task {task_id} in {workspace}", EXIT_REFUSED)
        if found.folder in ("done", "failed"):
            fail(f"task {task_id} has already finished (in {found.folder}/); nothing to cancel",
                 EXIT_REFUSED)
        if _daemon_running(ds):
            _ask(ds, "cancel", timeout, as_json, task=task_id, requeue=requeue)
        elif found.folder == "active":
            _refuse_held(ds, task_id, found.holder)
        else:
            _cancel_here(ds, task_id, requeue, as_json)


def _refuse_held(ds: DropSite, task_id: str, holder) -> None:
    """No daemon here to stop what runs the task: say who holds it and what to do."""
    where = f"no dropsited is running on {ds.workspace}"
    if holder is not None and holder.is_alive() is False:
        fail(f"task {task_id} is held by {holder.agent} (pid {holder.pid}), a process that is "
             f"gone, and {where}: give it back with `dropsited release {ds.workspace} "
             f"{task_id}`", EXIT_NOT_RUNNING)
    who = f"{holder.agent} (pid {holder.pid} on {holder.host})" if holder else "someone"
    fail(f"task {task_id} is held by {who}, and {where} to stop it", EXIT_NOT_RUNNING)


def _cancel_here(ds: DropSite, task_id: str, requeue: bool, as_json: bool) -> None:
    """A task at rest with no daemon running: moved by this command."""
    by = Requester.of_uid(os.geteuid())
    folder, task = ds.cancel_at_rest(task_id, by.user, requeue=requeue, uid=by.uid)
    if as_json:
        emit_json({"ok": True, "verb": "cancel", "message": f"cancelled {task_id}: now in "
                   f"{folder}/", "by": {"user": by.user, "uid": by.uid},
                   "details": {"folder": folder}})
    else:
        click.echo(visible(f"cancelled {task.id}: now in {folder}/"))


# -- asking the daemon ----------------------------------------------------------------------
def _workspace(workspace: Path | None, config: Path | None) -> DropSite:
    return open_workspace(_resolve_workspace(workspace, config))


def _daemon_running(ds: DropSite) -> bool:
    from ..daemon.status import daemon_running
    return daemon_running(ds.workspace, ds.store.shared)


def _ask(ds: DropSite, verb: str, timeout: float, as_json: bool, **fields) -> None:
    """Drop the request, wait for the reply, print it and exit as it says."""
    from ..protocol import control

    if not _daemon_running(ds):
        fail(f"no dropsited is running on {ds.workspace}", EXIT_NOT_RUNNING)
    host = this_host() if ds.store.shared else None
    request: Request = control.new_request(verb, host=host, **fields)
    try:
        control.send(ds.store, request)
    except DropSiteError as exc:
        fail(str(exc), EXIT_REFUSED)
    try:
        reply = control.await_reply(ds.store, request.id, timeout, lambda: _daemon_running(ds))
    except ControlError as exc:
        control.withdraw(ds.store, request.id)
        fail(f"{ds.workspace}: {exc}", EXIT_NOT_RUNNING)
    if reply is None:
        taken = not control.withdraw(ds.store, request.id)
        note = ("the daemon took the request and may still carry it out" if taken
                else "the request was withdrawn")
        fail(f"timed out after {timeout:g}s waiting for the daemon's reply to "
             f"`{request.what()}` ({note})", EXIT_TIMEOUT)
    if as_json:
        emit_json(reply)
    elif reply.get("ok") is True:
        click.echo(visible(reply.get("message", "done")))
    if reply.get("ok") is not True:
        if not as_json:
            click.echo(f"error: {visible(reply.get('message', 'refused'))}", err=True)
        sys.exit(EXIT_REFUSED)
