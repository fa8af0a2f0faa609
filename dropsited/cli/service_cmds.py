"""`dropsited service install|uninstall`: run the daemon under systemd, launchd or pm2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from ..service.install import ServiceError, build_spec, install, resolve_target, uninstall
from ..service.render import render
from .common import visible

_EXIT_USAGE = 2


def _one_platform(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The three flags share one value and click keeps the last given: refuse two."""
    given = sorted({a for a in sys.argv[1:] if a in ("--systemd", "--launchd", "--pm2")})
    if len(given) > 1:
        _fail(f"choose one of --systemd, --launchd, --pm2 (got {' '.join(given)})")
    return value


def _platform_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--systemd/--launchd/--pm2 (one `platform` value), --user and --dest, shared by both verbs."""
    options = [
        click.option(
            "--systemd", "platform", flag_value="systemd", callback=_one_platform,
            help="A systemd unit (Linux default).",
        ),
        click.option(
            "--launchd",
            "platform",
            flag_value="launchd",
            callback=_one_platform,
            help="A LaunchAgent plist (macOS default).",
        ),
        click.option("--pm2", "platform", flag_value="pm2", callback=_one_platform,
                     help="A pm2 ecosystem.config.js."),
        click.option(
            "--user",
            is_flag=True,
            help="systemd: a user unit (systemctl --user) instead of a system one.",
        ),
        click.option(
            "--dest",
            type=click.Path(file_okay=False),
            help="Folder to write into instead of the service manager's own (for tests).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit 2, the CLI's status for a usage or setup problem."""
    click.echo(f"dropsited service: {message}", err=True)
    sys.exit(_EXIT_USAGE)


def _print_commands(title: str, commands: list[str]) -> None:
    """The commands the user runs next: we never call a service manager ourselves."""
    click.echo(title)
    for command in commands:
        click.echo(f"  {command}")


@click.group("service")
def service() -> None:
    """Run the daemon as a service: write a systemd unit, LaunchAgent or pm2 file.

    \b
    Example:
      dropsited service install --user -c agents.yaml -w ./workspace
    """


@service.command("install")
@_platform_options
@click.option("-c", "--manifest", default="agents.yaml", show_default=True, help="Agent manifest.")
@click.option("-w", "--workspace", help="Workspace folder (default: the manifest's).")
@click.option("--print", "print_only", is_flag=True, help="Only show the file; write nothing.")
def install_cmd(
    platform: str | None,
    user: bool,
    dest: str | None,
    manifest: str,
    workspace: str | None,
    print_only: bool,
) -> None:
    """Write a service file that runs `dropsited up` with this interpreter and absolute paths.

    The default is launchd on macOS and systemd (a system unit, or a user unit with
    --user) on Linux. Then run the printed commands to enable it.

    \b
    Example:
      dropsited service install --user -c agents.yaml -w ./workspace
      dropsited service install --pm2 --print
    """
    try:
        spec = build_spec(manifest, workspace, os.environ)
        target = resolve_target(platform, user, dest, Path(spec.manifest), os.environ)
        if print_only:
            click.echo(render(target.platform, spec, user=target.user), nl=False)
            return
        install(target, spec)
    except (ServiceError, ValueError) as exc:  # ValueError: a control character in a value
        _fail(visible(str(exc)))
    click.echo(f"wrote {target.path}")
    _print_commands("Enable and start it with:", target.enable_commands())


@service.command("uninstall")
@_platform_options
@click.option(
    "-c",
    "--manifest",
    default="agents.yaml",
    show_default=True,
    help="pm2 only: the manifest whose folder holds ecosystem.config.js.",
)
def uninstall_cmd(platform: str | None, user: bool, dest: str | None, manifest: str) -> None:
    """Remove the service file `install` wrote, and print the commands that stop the service.

    \b
    Example:
      dropsited service uninstall --user
    """
    manifest_path = Path(manifest).expanduser().absolute()
    target = resolve_target(platform, user, dest, manifest_path, os.environ)
    try:
        removed = uninstall(target)
    except ServiceError as exc:
        _fail(str(exc))
    click.echo(f"removed {target.path}" if removed else f"nothing to remove at {target.path}")
    _print_commands("Stop it with:", target.disable_commands())


def register(group: click.Group) -> None:
    """Add `service` to the main group."""
    group.add_command(service)
