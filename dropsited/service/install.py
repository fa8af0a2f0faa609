"""`dropsited service install/uninstall`: write or remove one service file, print the commands.

Like `pm2 startup`, the file names this interpreter's `dropsited` and absolute paths,
and the user runs the printed systemctl/launchctl/pm2 commands: dropsited never calls
a service manager itself. A file is only overwritten or removed if it carries our
marker, so a hand-written unit or ecosystem.config.js is never lost.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import templates
from .defaults import LAUNCHD_LABEL, SERVICE_NAME
from .render import ServiceSpec, render

DEFAULT_PATH_ENV = "/usr/local/bin:/usr/bin:/bin"


class ServiceError(Exception):
    """A problem the user can fix (missing manifest, unwritable folder): one line, exit 2."""


@dataclass(frozen=True)
class Target:
    """Where one platform's file goes and how it is enabled and disabled."""

    platform: str
    user: bool
    path: Path

    def enable_commands(self) -> list[str]:
        """Commands that load and start the installed file."""
        if self.platform == "systemd":
            ctl = _systemctl(self.user)
            commands = [f"{ctl} daemon-reload && {ctl} enable --now {SERVICE_NAME}.service"]
            if self.user:
                commands.append("loginctl enable-linger $USER   # keep it running after logout")
            return commands
        if self.platform == "launchd":
            return [f"launchctl bootstrap gui/$(id -u) {self.path}"]
        return [
            f"cd {self.path.parent} && pm2 start ecosystem.config.js && pm2 save && pm2 startup"
        ]

    def disable_commands(self) -> list[str]:
        """Commands that stop the service once its file is gone (enable links are removed by us)."""
        if self.platform == "systemd":
            ctl = _systemctl(self.user)
            return [f"{ctl} stop {SERVICE_NAME}.service && {ctl} daemon-reload"]
        if self.platform == "launchd":
            return [f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}"]
        return [f"pm2 delete {SERVICE_NAME} && pm2 save"]


def _systemctl(user: bool) -> str:
    """`systemctl`, with `--user` for a user unit."""
    return "systemctl --user" if user else "systemctl"


def default_platform(system: str = sys.platform) -> str:
    """launchd on macOS, systemd elsewhere (Linux)."""
    return "launchd" if system == "darwin" else "systemd"


def file_name(platform: str) -> str:
    """The name the service manager expects the file under."""
    return {
        "systemd": f"{SERVICE_NAME}.service",
        "launchd": f"{LAUNCHD_LABEL}.plist",
        "pm2": "ecosystem.config.js",
    }[platform]


def default_dest(platform: str, user: bool, manifest: Path, environ: Mapping[str, str]) -> Path:
    """The folder the service manager reads: systemd's user/system dir, LaunchAgents, or the manifest's."""
    home = Path(environ.get("HOME") or Path.home())
    if platform == "systemd" and user:
        config = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        return Path(config) / "systemd" / "user"
    if platform == "systemd":
        return Path("/etc/systemd/system")
    if platform == "launchd":
        return home / "Library" / "LaunchAgents"
    return manifest.parent


def find_program(executable: str = sys.executable) -> tuple[str, ...]:
    """The argv that runs this installation's CLI: the console script beside the interpreter.

    Not shutil.which: PATH may name another install, and service managers run with a
    minimal PATH anyway.
    """
    script = Path(executable).parent / "dropsited"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (executable, "-m", "dropsited.cli")


def build_spec(
    manifest: str | os.PathLike[str],
    workspace: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    *,
    program: tuple[str, ...] | None = None,
) -> ServiceSpec:
    """A ServiceSpec with absolute paths, checked so the service does not fail at start.

    Without -w the daemon reads the workspace from the manifest; the sandbox then lets it
    write the manifest's folder, where that workspace usually lives.
    """
    manifest_path = Path(manifest).expanduser().absolute()
    if not manifest_path.is_file():
        raise ServiceError(f"manifest not found: {manifest_path}")
    workspace_path = None if workspace is None else Path(workspace).expanduser().absolute()
    home = Path(environ.get("HOME") or Path.home())
    return ServiceSpec(
        program=program or find_program(),
        manifest=str(manifest_path),
        workspace=None if workspace_path is None else str(workspace_path),
        working_directory=str(manifest_path.parent),
        writable_paths=(str(workspace_path or manifest_path.parent),),
        log_dir=str(home / "Library" / "Logs" / "dropsited"),
        path_env=environ.get("PATH") or DEFAULT_PATH_ENV,
        user=environ.get("SUDO_USER") or _login_name(),
    )


def _login_name() -> str:
    """The invoking user's name, the account a system unit runs the daemon as."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def resolve_target(
    platform: str | None,
    user: bool,
    dest: str | os.PathLike[str] | None,
    manifest: Path,
    environ: Mapping[str, str],
) -> Target:
    """The platform (defaulted from the OS) and the full path of its file."""
    platform = platform or default_platform()
    folder = Path(dest).absolute() if dest else default_dest(platform, user, manifest, environ)
    return Target(platform, user, folder / file_name(platform))


def _check_ours(path: Path) -> None:
    """Refuse to touch an existing file that `install` did not write."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror}") from exc
    if templates.MARKER not in text:
        raise ServiceError(f"{path} exists and was not written by dropsited; move it away first")


def write_service_file(target: Target, text: str) -> None:
    """Write `text` to the target path, creating its folder; one-line errors."""
    if target.path.exists():
        _check_ours(target.path)
    try:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        target.path.write_text(text, encoding="utf-8")
    except OSError as exc:
        hint = (
            " (run as root, or pass --user)"
            if target.platform == "systemd" and not target.user
            else ""
        )
        raise ServiceError(f"cannot write {target.path}: {exc.strerror}{hint}") from exc


def prepare_log_dir(target: Target, spec: ServiceSpec) -> None:
    """Create launchd's log folder: launchd opens StandardOutPath but does not mkdir it."""
    if target.platform != "launchd":
        return
    try:
        Path(spec.log_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot create log folder {spec.log_dir}: {exc.strerror}") from exc


def install(target: Target, spec: ServiceSpec) -> str:
    """Write the file for `target`; returns its text."""
    text = render(target.platform, spec, user=target.user)
    write_service_file(target, text)
    prepare_log_dir(target, spec)
    return text


def remove_enable_links(target: Target) -> list[Path]:
    """Remove `*.wants/` links to our unit next to it, the file-level half of `systemctl disable`.

    Done here because `systemctl disable` refuses once the unit file is gone.
    """
    if target.platform != "systemd":
        return []
    removed = []
    for link in target.path.parent.glob(f"*.wants/{target.path.name}"):
        if link.is_symlink():
            link.unlink()
            removed.append(link)
    return removed


def uninstall(target: Target) -> bool:
    """Remove the file we wrote and its enable links; False if there was none."""
    if not target.path.exists():
        return False
    _check_ours(target.path)
    try:
        remove_enable_links(target)
        target.path.unlink()
    except OSError as exc:
        raise ServiceError(f"cannot remove {target.path}: {exc.strerror}") from exc
    return True
