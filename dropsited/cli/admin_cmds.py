"""Workspace verbs: init, register, stats, reap, agents."""

from __future__ import annotations

from pathlib import Path

import click

from ..protocol import DropSite
from ..protocol.names import check_agent_name
from .common import (
    emit_json,
    handle_errors,
    json_option,
    open_workspace,
    table,
    visible,
    workspace_command,
)


def register(group: click.Group) -> None:
    for make in (_init, _register, _stats, _reap, _agents):
        make(group)


def _init(group: click.Group) -> None:
    @group.command("init")
    @click.argument("path", type=click.Path(file_okay=False, path_type=Path))
    @handle_errors
    def init(path: Path) -> None:
        """Create a workspace (the seven folders) at PATH; harmless if it exists.

        \b
        Example:
          dropsited init ./workspace
        """
        DropSite(path)
        path.chmod(0o755 & path.stat().st_mode | 0o700)
        click.echo(f"Workspace initialized at {path}")


def _register(group: click.Group) -> None:
    @workspace_command(group, "register")
    @click.option("--name", required=True)
    @click.option("--role", default="worker", show_default=True)
    def register_(workspace: Path, name: str, role: str) -> None:
        """Add an agent to the registry (agents/NAME.json).

        \b
        Example:
          dropsited register ./workspace --name larry --role orchestrator
        """
        open_workspace(workspace).register_agent(check_agent_name(name), role)
        click.echo(f"Agent '{name}' registered ({role})")


def _stats(group: click.Group) -> None:
    @workspace_command(group, "stats")
    @json_option
    def stats(workspace: Path, as_json: bool) -> None:
        """Count the tasks in each folder (and the quarantined files).

        \b
        Example:
          dropsited stats ./workspace --json
        """
        ds = open_workspace(workspace)
        counts = ds.stats()
        counts["quarantine"] = len(ds.quarantined())
        if as_json:
            emit_json(counts)
            return
        click.echo("Workspace stats:")
        for folder, count in counts.items():
            click.echo(f"  {folder:10} {count:6d} {'█' * min(count, 50)}")


def _reap(group: click.Group) -> None:
    @workspace_command(group, "reap")
    @click.option("--stale", type=float, default=None, metavar="SECONDS",
                  help="Also requeue tasks held longer than this, even by a live holder.")
    @json_option
    def reap(workspace: Path, stale: float | None, as_json: bool) -> None:
        """Requeue every task in active/ whose holder on this host is dead.

        A reap counts as an attempt: a task out of attempts goes to failed/.
        Interrupted moves left by killed writers are finished first.

        \b
        Example:
          dropsited reap ./workspace
          dropsited reap ./workspace --stale 600
        """
        ds = open_workspace(workspace)
        actions = ds.store.recover_temp_files()
        hosts = ds.hosts.view() if ds.store.shared else None  # other hosts' leases
        reaped = ds.reap(stale=stale, include_live=stale is not None, hosts=hosts)
        if as_json:
            emit_json({"reaped": [{"id": i, "reason": r} for i, r in reaped], "recovered": actions})
            return
        for line in actions:
            click.echo(visible(line))
        for task_id, reason in reaped:
            click.echo(f"reaped {task_id} ({reason})")
        if not reaped and not actions:
            click.echo("nothing to reap")


def _agents(group: click.Group) -> None:
    @workspace_command(group, "agents")
    @json_option
    def agents(workspace: Path, as_json: bool) -> None:
        """List the agent registry (agents/*.json).

        \b
        Example:
          dropsited agents ./workspace
        """
        records = open_workspace(workspace).list_agents()
        if as_json:
            emit_json(records)
            return
        rows = ([r.get("name"), r.get("role", "-"), r.get("state", "-"), r.get("last_seen", "-")]
                for r in records)
        click.echo(table(rows, ("name", "role", "state", "last seen")))
