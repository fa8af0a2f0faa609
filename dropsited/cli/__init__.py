"""The `dropsited` command. Each verb family lives in its own module with a `register(group)`."""

from __future__ import annotations

import importlib

import click

from .. import __version__

# Modules below dropsited.cli, each exposing register(group: click.Group).
COMMAND_MODULES = ("task_cmds", "admin_cmds", "check_cmd", "daemon_cmds", "service_cmds",
                   "review_cmd", "top_cmd", "wait_cmd", "serve_cmds", "control_cmds",
                   "retention_cmds")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dropsited")
def main() -> None:
    """DropSite: folders of JSON files as a task queue for AI agents, and a daemon to run them.

    \b
    Example:
      dropsited init ./workspace
      dropsited drop ./workspace --from larry --title "Build auth API" --type code
      dropsited up -c agents.yaml
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(main)
