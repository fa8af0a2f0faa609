"""`dropsited check`: validate an agents manifest without starting anything.

Exit codes: 0 when the manifest is valid, 2 when it is not (the same code click uses for
usage errors), so scripts and CI can gate a deploy on it.
"""

from __future__ import annotations

import json
import shlex
import sys

import click

from ..daemon.manifest import AgentSpec, ManifestError, load_manifest

EXIT_INVALID = 2


@click.command("check")
@click.option(
    "-c",
    "--config",
    "config",
    default="agents.yaml",
    show_default=True,
    metavar="FILE",
    help="The agents manifest to check.",
)
@click.option(
    "-w",
    "--workspace",
    default=None,
    metavar="DIR",
    help="Use this workspace instead of the manifest's `workspace:`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the parsed manifest as JSON.")
@click.option("--schema", "as_schema", is_flag=True,
              help="Print the manifest's JSON Schema (for editors) and read no manifest.")
def check(config: str, workspace: str | None, as_json: bool, as_schema: bool) -> None:
    """Check an agents manifest: every error, one line each, with file:line and key path.

    \b
    Example:
      dropsited check -c agents.yaml
      dropsited check -c agents.yaml --json | jq '.agents[].name'
      dropsited check --schema > agents.schema.json
    \b
    An error looks like:
      agents.yaml:14: agents[2].timeout: expected seconds, got 'ten'

    Exits 0 if the manifest is valid, 2 if not.
    """
    if as_schema:
        from ..daemon.manifest.json_schema import manifest_json_schema
        click.echo(json.dumps(manifest_json_schema(), indent=2))
        return
    try:
        manifest = load_manifest(config, workspace_override=workspace)
    except ManifestError as e:
        for line in e.errors:
            click.echo(line, err=True)
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    count = len(manifest.agents)
    click.echo(f"{config}: OK, {count} agent{'s' * (count != 1)}, workspace {manifest.workspace}")
    for agent in manifest.agents:
        click.echo("  " + _summary(agent))


def _summary(agent: AgentSpec) -> str:
    """One line: name, mode, command, concurrency, tags."""
    if isinstance(agent.command, str):
        command = f"sh -c {shlex.quote(agent.command)}"
    else:
        command = shlex.join(agent.command)
    if len(command) > 60:
        command = command[:57] + "..."
    tags = ",".join(agent.tags) if agent.tags is not None else "(untagged work)"
    return f"{agent.name}  {agent.mode}  x{agent.concurrency}  tags={tags}  {command}"


def register(group: click.Group) -> None:
    """Add this module's commands to the main group."""
    group.add_command(check)
