"""Verbs on tasks: 0.1.0's (drop, inbox, list, feedback) and what a human agent needs
at a terminal (show, claim, complete, fail, block, unblock, retry, release)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..protocol import DropSite, TaskBuilder, TaskNotFound, retention
from ..protocol.names import check_agent_name, check_task_id, is_valid_task_id
from ..protocol.store import TASK_FOLDERS
from ..protocol.task import Task
from . import retention_cmds, wait_cmd
from .common import (
    TASK_HEADERS,
    emit_json,
    fail,
    json_option,
    open_workspace,
    parse_json,
    parse_json_object,
    short_time,
    table,
    task_row,
    visible,
    workspace_command,
)
from .show import render_task


def register(group: click.Group) -> None:
    for make in (_drop, _inbox, _list, _show, _feedback, _claim, _complete, _fail,
                 _block, _unblock, _retry, _release):
        make(group)


def _drop(group: click.Group) -> None:
    @workspace_command(group, "drop")
    @click.option("--from", "from_agent", required=True, help="Who creates the task.")
    @click.option("--to", "to_agent", default=None, help="Assign it to this agent only.")
    @click.option("--title", required=True)
    @click.option("--type", "task_type", default="general", show_default=True,
                  help="Becomes a tag, as in 0.1.0.")
    @click.option("--tag", "tags", multiple=True, help="Another tag (repeatable).")
    @click.option("--payload", default="{}", help="JSON object: the task's context.")
    @click.option("--description", default="")
    @click.option("--priority", type=int, default=5, show_default=True, help="1 is highest.")
    @click.option("--parent", default=None, help="Id of the task this one was chained from.")
    @click.option("--depends-on", "depends", multiple=True, help="Not before this task is done (repeatable).")
    @click.option("--delay", type=click.FloatRange(0, 10 * 365 * 86400), default=0.0,
                  help="Seconds before it may be handed out.")
    @click.option("--max-retries", type=int, default=3, show_default=True)
    @click.option("--id", "task_id", default=None, help="Choose the id (default: a new time-ordered one).")
    @click.option("-q", "--quiet", is_flag=True, help="Print only the task id (for scripts).")
    @click.option("--wait", "wait_", is_flag=True,
                  help="Then wait until it is done or failed, print it as `dropsited wait` "
                       "does and exit as it does.")
    @wait_cmd.timeout_option
    @json_option
    def drop(workspace: Path, from_agent: str, to_agent: str | None, title: str, task_type: str,
             tags: tuple, payload: str, description: str, priority: int, parent: str | None,
             depends: tuple, delay: float, max_retries: int, task_id: str | None, quiet: bool,
             wait_: bool, timeout: float | None, as_json: bool) -> None:
        """Drop a task into WORKSPACE/inbox/.

        With --wait, block until an agent finished it: with --json the finished
        task is printed, so a pipeline can call an agent like a function.

        \b
        Example:
          dropsited drop ./workspace --from larry --title "Build auth API" \\
              --type code --payload '{"lang": "python"}'
          dropsited drop ./workspace --from me --title t --type summarise \\
              --payload '{"text": "..."}' --wait --timeout 60 --json | jq .result
        """
        if timeout is not None and not wait_:
            fail("--timeout needs --wait")
        context = parse_json_object(payload, "--payload")
        check_agent_name(from_agent)
        ds = open_workspace(workspace)
        builder = (TaskBuilder(title, from_agent).describe(description).priority(priority)
                   .context(context).tag(task_type, *tags).max_retries(max_retries).delay(delay))
        if to_agent:
            builder.assign(to_agent)
        if parent:
            builder.parent(parent)
        if depends:
            builder.depends_on(*depends)
        if task_id:
            builder.with_id(task_id)
        task = builder.build()
        ds.submit(task)
        if wait_:
            wait_cmd.finish(ds, [task.id], timeout, (), as_json)
        elif as_json:
            emit_json(task.to_dict())
        elif quiet:
            click.echo(task.id)
        else:
            click.echo(f"Task dropped: {task.id}")


def _inbox(group: click.Group) -> None:
    @workspace_command(group, "inbox")
    @click.option("--agent", default=None, help="Only tasks this agent may take.")
    @json_option
    def inbox(workspace: Path, agent: str | None, as_json: bool) -> None:
        """List the inbox, best first (priority, then age).

        \b
        Example:
          dropsited inbox ./workspace --agent coder
        """
        _print_tasks(open_workspace(workspace).list_tasks("inbox", agent=agent), as_json, "inbox")


def _list(group: click.Group) -> None:
    @workspace_command(group, "list")
    @click.argument("folder", type=click.Choice(list(TASK_FOLDERS) + ["quarantine", "archive"]))
    @click.option("--agent", default=None)
    @click.option("--tag", "tags", multiple=True)
    @json_option
    def list_(workspace: Path, folder: str, agent: str | None, tags: tuple, as_json: bool) -> None:
        """List the tasks in one folder (or the quarantined files with their reasons).

        \b
        Example:
          dropsited list ./workspace done
          dropsited list ./workspace quarantine
          dropsited list ./workspace archive      # what `dropsited archive` moved
        """
        ds = open_workspace(workspace)
        if folder == "quarantine":
            _print_quarantine(ds, as_json)
            return
        if folder == "archive":
            _print_tasks(retention_cmds.archived_list(ds, agent, list(tags)), as_json, folder)
            return
        _print_tasks(ds.list_tasks(folder, agent=agent, tags=list(tags) or None), as_json, folder)


def _print_tasks(tasks: list[Task], as_json: bool, folder: str) -> None:
    if as_json:
        emit_json([t.to_dict() for t in tasks])
    elif not tasks:
        click.echo(f"({folder}/ is empty)")
    else:
        click.echo(table((task_row(t) for t in tasks), TASK_HEADERS))


def _print_quarantine(ds: DropSite, as_json: bool) -> None:
    records = ds.quarantined()
    if as_json:
        emit_json(records)
    elif not records:
        click.echo("(quarantine/ is empty)")
    else:
        rows = ([r.get("file", "?"), r.get("quarantined_as", "?"), short_time(r.get("at")),
                 r.get("error", "?")] for r in records)
        click.echo(table(rows, ("file", "kept as", "at", "reason")))


def _show(group: click.Group) -> None:
    @workspace_command(group, "show")
    @click.argument("task_id")
    @json_option
    def show(workspace: Path, task_id: str, as_json: bool) -> None:
        """Show one task, its folder and its history as a timeline.

        TASK_ID may also be the name of a quarantined file.

        \b
        Example:
          dropsited show ./workspace 01a21a2512910000575de281af1abee8
        """
        ds = open_workspace(workspace)
        if any(bad in task_id for bad in ("/", "\\", "..", "\x00")) or not task_id:
            check_task_id(task_id)  # raises InvalidName with the reason
        found = ds.locate(task_id) if is_valid_task_id(task_id) else None
        archived = retention.find_archived(ds.store, task_id) if found is None else None
        if archived is not None:  # moved by `dropsited archive` or `retention:`
            where, task = archived
            emit_json({"folder": where, "task": task.to_dict()}) if as_json else \
                click.echo(render_task(ds, task, where))
            return
        if found is None:
            record = next((r for r in ds.quarantined() if task_id in
                           (r.get("quarantined_as"), Path(str(r.get("file"))).name)), None)
            if record is None:
                raise TaskNotFound(f"no task {task_id} in {workspace}")
            emit_json(record) if as_json else click.echo(
                visible(f"{record.get('file')}: quarantined as quarantine/"
                        f"{record.get('quarantined_as')} at {short_time(record.get('at'))}")
                + f"\n  reason: {visible(record.get('error'))}")
            return
        task = ds.store.load(found.path)
        if as_json:
            emit_json({"folder": found.folder, "task": task.to_dict()})
        else:
            click.echo(render_task(ds, task, found.folder))


def _feedback(group: click.Group) -> None:
    @workspace_command(group, "feedback")
    @click.argument("task_id")
    @click.argument("response")
    @click.option("--json-response", is_flag=True, help="Parse RESPONSE as JSON.")
    def feedback(workspace: Path, task_id: str, response: str, json_response: bool) -> None:
        """Answer a task waiting in feedback/; it goes back to the inbox with the answer.

        \b
        Example:
          dropsited feedback ./workspace 01a2...e8 "approved, send it"
        """
        answer = parse_json(response, "RESPONSE") if json_response else response
        open_workspace(workspace).respond_feedback(task_id, answer)
        click.echo(f"Feedback submitted for {task_id}")


def _claim(group: click.Group) -> None:
    @workspace_command(group, "claim")
    @click.argument("task_id", required=False)
    @click.option("--agent", default=lambda: os.environ.get("DROPSITE_AGENT") or "human",
                  show_default="$DROPSITE_AGENT or human")
    @click.option("--tag", "tags", multiple=True, help="With no TASK_ID: only tasks with one of these tags.")
    @click.option("--pid", type=int, default=None,
                  help="Process that holds the claim; when it exits, the task is reaped back "
                       "to the inbox. Default: none, a person holds it (only `reap --stale` "
                       "takes it back).")
    @json_option
    def claim(workspace: Path, task_id: str | None, agent: str, tags: tuple, pid: int | None,
              as_json: bool) -> None:
        """Claim a task by id, or the best one this agent may take, as a person at a terminal.

        \b
        Example:
          dropsited claim ./workspace --agent human
          dropsited claim ./workspace 01a2...e8 --agent human
        """
        ds = open_workspace(workspace)
        holder_pid = pid if pid is not None else 0  # a person, not a process
        task = _claim_for(ds, check_agent_name(agent), task_id, list(tags) or None, holder_pid)
        if task is None:
            fail(_why_not_claimed(ds, task_id), 1)
        if as_json:
            emit_json(task.to_dict())
        else:
            click.echo(render_task(ds, task, "active"))


def _why_not_claimed(ds: DropSite, task_id: str | None) -> str:
    if task_id is None:
        return "nothing to claim"
    found = ds.locate(task_id)
    if found is None:
        return f"no task {task_id} in {ds.workspace}"
    if found.folder == "inbox":
        return f"task {task_id} is not due yet (delay or retry backoff) or waits for its dependencies"
    return f"task {task_id} is in {found.folder}/, not inbox/"


def _claim_for(ds: DropSite, agent: str, task_id: str | None, tags: list | None,
               holder_pid: int) -> Task | None:
    """Claim under the holder `holder_pid`, which outlives this short CLI process."""
    if task_id is not None:
        ids = [check_task_id(task_id)]
    else:
        index = ds.inbox_index()
        index.refresh()
        ids = [e.task_id for e in index.candidates(agent, frozenset(tags) if tags else None)]
    for tid in ids:
        task = ds.claim(agent, tid, holder_pid=holder_pid)
        if task is not None:
            return task
    return None


def _held(ds: DropSite, task_id: str, force: bool) -> tuple[Task, dict]:
    """The task in active/, if this command may move it: PROTOCOL §4 makes these moves
    the holder's. A holder alive on this host (other than a person, or a process that
    ran this command) refuses, naming itself; `--force` overrides, recorded in history."""
    found = ds.locate(task_id)
    if found is None:
        raise TaskNotFound(f"no task {task_id} in {ds.workspace}")
    if found.folder != "active":
        raise TaskNotFound(f"task {task_id} is in {found.folder}/, not active/ (claim it first)")
    task = ds.store.load(found.path)
    holder = task.holder
    if holder is None or holder.pid == 0 or holder.is_alive() is not True \
            or holder.pid in _ancestors():
        return task, {}
    if not force:
        fail(f"task {task_id} is held by {holder.agent} (pid {holder.pid} on {holder.host}), "
             "which is still running it; its outcome is its own to record "
             "(--force overrides, and is recorded in the task's history)", 1)
    return task, {"forced_by": _user(), "forced_over": f"{holder.agent} pid {holder.pid}"}


def _ancestors() -> set[int]:
    """This process and its parents up to init: a script that claimed with `--pid $$`
    holds the task (and bash may exec its last command in its own pid)."""
    import psutil
    try:
        return {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    except psutil.Error:
        return {os.getpid()}


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


FORCE = click.option("--force", is_flag=True,
                     help="Move it even though its holder is alive (recorded in its history).")


def _complete(group: click.Group) -> None:
    @workspace_command(group, "complete")
    @click.argument("task_id")
    @click.option("--result", default="{}", help="JSON object recorded as the task's result.")
    @FORCE
    def complete(workspace: Path, task_id: str, result: str, force: bool) -> None:
        """Complete a task in active/ (active -> done) with a result.

        \b
        Example:
          dropsited complete ./workspace 01a2...e8 --result '{"approved": true}'
        """
        value = parse_json_object(result, "--result")
        ds = open_workspace(workspace)
        task, forced = _held(ds, task_id, force)
        ds.complete(task, value, **forced)
        click.echo(f"Task {task_id} done")


def _fail(group: click.Group) -> None:
    @workspace_command(group, "fail")
    @click.argument("task_id")
    @click.option("--error", required=True, help="Why the attempt failed.")
    @FORCE
    def fail_(workspace: Path, task_id: str, error: str, force: bool) -> None:
        """Record a failed attempt: back to the inbox after a backoff, or failed/ when out of retries.

        \b
        Example:
          dropsited fail ./workspace 01a2...e8 --error "API returned 500"
        """
        ds = open_workspace(workspace)
        task, forced = _held(ds, task_id, force)
        where = ds.fail(task, error, details=forced)
        click.echo(f"Task {task_id} -> {where}/")


def _block(group: click.Group) -> None:
    @workspace_command(group, "block")
    @click.argument("task_id")
    @click.option("--reason", required=True)
    @FORCE
    def block(workspace: Path, task_id: str, reason: str, force: bool) -> None:
        """Move a task in active/ to blocked/ with a reason.

        \b
        Example:
          dropsited block ./workspace 01a2...e8 --reason "waiting for API keys"
        """
        ds = open_workspace(workspace)
        task, forced = _held(ds, task_id, force)
        ds.block(task, reason, **forced)
        click.echo(f"Task {task_id} blocked")


def _unblock(group: click.Group) -> None:
    @workspace_command(group, "unblock")
    @click.argument("task_id")
    @click.option("--note", default=None, help="Recorded in the history entry.")
    def unblock(workspace: Path, task_id: str, note: str | None) -> None:
        """Move a blocked task back to the inbox.

        \b
        Example:
          dropsited unblock ./workspace 01a2...e8 --note "keys added"
        """
        open_workspace(workspace).unblock(task_id, note)
        click.echo(f"Task {task_id} back in inbox/")


def _retry(group: click.Group) -> None:
    @workspace_command(group, "retry")
    @click.argument("task_id")
    def retry(workspace: Path, task_id: str) -> None:
        """Move a failed task back to the inbox with its attempts reset.

        \b
        Example:
          dropsited retry ./workspace 01a2...e8
        """
        open_workspace(workspace).retry(task_id)
        click.echo(f"Task {task_id} back in inbox/ (attempts reset)")


def _release(group: click.Group) -> None:
    @workspace_command(group, "release")
    @click.argument("task_id")
    @FORCE
    def release(workspace: Path, task_id: str, force: bool) -> None:
        """Give a task in active/ back to the inbox without using an attempt.

        \b
        Example:
          dropsited release ./workspace 01a2...e8
        """
        ds = open_workspace(workspace)
        task, forced = _held(ds, task_id, force)
        ds.release(task, "released from the command line", **forced)
        click.echo(f"Task {task_id} back in inbox/")
