"""Turn a ServiceSpec into the text of a systemd unit, a launchd plist or a pm2 file.

Pure functions: no file is read or written here, so `install` and the shipped example
files (see `render_shipped`) come from exactly the same code.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

from . import templates
from .defaults import (
    DEFAULT_DRAIN_GRACE,
    LAUNCHD_LABEL,
    RESTART_DELAY,
    SERVICE_NAME,
    STOP_TIMEOUT,
    THROTTLE_INTERVAL,
    WATCHDOG_SEC,
)

PLATFORMS = ("systemd", "launchd", "pm2")


class ServiceTemplate(string.Template):
    """`@{name}` placeholders: `$` is systemd's and the shell's, braces are JavaScript's."""

    delimiter = "@"


@dataclass(frozen=True)
class ServiceSpec:
    """What a service file needs to know: how to run `dropsited up`, and where.

    Paths are kept as strings exactly as they go into the file, so the shipped examples
    can use a relative manifest (pm2) while `install` always passes absolute ones.
    """

    program: tuple[str, ...]
    manifest: str
    workspace: str | None
    working_directory: str | None
    writable_paths: tuple[str, ...]
    log_dir: str
    path_env: str
    user: str
    label: str = LAUNCHD_LABEL
    name: str = SERVICE_NAME

    def argv(self) -> list[str]:
        """The full command line of the daemon, `-w` only when a workspace was given."""
        args = [*self.program, "up", "-c", self.manifest]
        if self.workspace is not None:
            args += ["-w", self.workspace]
        return args


# --- systemd -----------------------------------------------------------------------


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def refuse_controls(spec: ServiceSpec) -> None:
    """Every value that goes into a service file, free of control characters: systemd
    ends a line at a bare CR as at LF, so one in a path would add lines to the unit."""
    for name in ("program", "manifest", "workspace", "working_directory", "writable_paths",
                 "log_dir", "path_env", "user", "label", "name"):
        values = getattr(spec, name)
        for value in values if isinstance(values, tuple) else (values,):
            found = _CONTROL.search(value) if isinstance(value, str) else None
            if found:
                raise ValueError(f"{name}: {value!r} holds {_what(found.group())}, which "
                                 "cannot go into a service file")


def _what(char: str) -> str:
    return {"\n": "a newline", "\r": "a carriage return"}.get(
        char, f"a control character (U+{ord(char):04X})")


def systemd_escape(value: str) -> str:
    """Escape systemd's specifier (`%`) and variable (`$`) characters in a literal value."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"{_what(found.group())} cannot go into a unit file: {value!r}")
    return value.replace("%", "%%").replace("$", "$$")


def systemd_quote(word: str) -> str:
    """One word of a systemd command line or path list, double-quoted only when needed."""
    escaped = systemd_escape(word)
    if escaped and not any(ch in escaped for ch in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(value: float) -> str:
    """A duration as systemd writes it: `45` rather than `45.0`."""
    return f"{value:g}"


def render_systemd(spec: ServiceSpec, *, user: bool) -> str:
    """The unit file: a user unit (`systemctl --user`) or a hardened system unit."""
    template = templates.SYSTEMD_USER if user else templates.SYSTEMD_SYSTEM
    working_directory = spec.working_directory or "~"
    return ServiceTemplate(template).substitute(
        exec_start=" ".join(systemd_quote(word) for word in spec.argv()),
        working_directory=systemd_escape(working_directory),
        user=systemd_escape(spec.user),
        path_environment=systemd_quote(f"PATH={spec.path_env}"),
        read_write_paths=" ".join(systemd_quote(path) for path in spec.writable_paths),
        restart_sec=_seconds(RESTART_DELAY),
        watchdog_sec=_seconds(WATCHDOG_SEC),
        drain_grace=_seconds(DEFAULT_DRAIN_GRACE),
        timeout_stop_sec=_seconds(STOP_TIMEOUT),
    )


# --- launchd -----------------------------------------------------------------------


def _plist_strings(words: list[str], indent: str = "\t\t") -> str:
    """`<string>` lines for a plist array."""
    return "\n".join(f"{indent}<string>{xml_escape(word)}</string>" for word in words)


def render_launchd(spec: ServiceSpec) -> str:
    """The LaunchAgent plist; launchd keeps the daemon in the foreground as its job."""
    working_directory = spec.working_directory or spec.log_dir
    return ServiceTemplate(templates.LAUNCHD_AGENT).substitute(
        label=xml_escape(spec.label),
        program_arguments=_plist_strings(spec.argv()),
        working_directory=xml_escape(working_directory),
        path=xml_escape(spec.path_env),
        throttle_interval=THROTTLE_INTERVAL,
        exit_timeout=int(STOP_TIMEOUT),
        stdout_path=xml_escape(f"{spec.log_dir}/dropsited.out.log"),
        stderr_path=xml_escape(f"{spec.log_dir}/dropsited.err.log"),
    )


# --- pm2 ---------------------------------------------------------------------------


def render_pm2(spec: ServiceSpec) -> str:
    """The ecosystem.config.js; without a working directory it runs beside the file."""
    argv = spec.argv()
    cwd = "__dirname" if spec.working_directory is None else json.dumps(spec.working_directory)
    return ServiceTemplate(templates.PM2_ECOSYSTEM).substitute(
        name=json.dumps(spec.name),
        script=json.dumps(argv[0]),
        args=json.dumps(argv[1:]),
        cwd=cwd,
        restart_delay_ms=int(RESTART_DELAY * 1000),
        drain_grace=_seconds(DEFAULT_DRAIN_GRACE),
        kill_timeout_ms=int(STOP_TIMEOUT * 1000),
    )


def render(platform: str, spec: ServiceSpec, *, user: bool = True) -> str:
    """The file for `platform` (one of PLATFORMS); `user` matters to systemd only."""
    refuse_controls(spec)
    if platform == "systemd":
        return render_systemd(spec, user=user)
    if platform == "launchd":
        return render_launchd(spec)
    if platform == "pm2":
        return render_pm2(spec)
    raise ValueError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")


# --- the shipped examples ----------------------------------------------------------

PLACEHOLDER_PROGRAM = "/usr/local/bin/dropsited"

# Paths the shipped systemd and launchd files carry; a reader replaces them or runs
# `dropsited service install`, which writes real ones.
PLACEHOLDER_SPEC = ServiceSpec(
    program=(PLACEHOLDER_PROGRAM,),
    manifest="/opt/dropsited/agents.yaml",
    workspace="/opt/dropsited/workspace",
    working_directory="/opt/dropsited",
    writable_paths=("/opt/dropsited/workspace",),
    log_dir="/opt/dropsited/logs",
    path_env="/usr/local/bin:/usr/bin:/bin",
    user="dropsited",
)

# The repo-root ecosystem.config.js: `dropsited` from PATH, the manifest beside the file.
PLACEHOLDER_PM2_SPEC = ServiceSpec(
    program=("dropsited",),
    manifest="agents.yaml",
    workspace=None,
    working_directory=None,
    writable_paths=(),
    log_dir="",
    path_env="",
    user="",
)

# Repo-relative path of each shipped file -> (platform, user unit?, spec).
SHIPPED = {
    "systemd/system/dropsited.service": ("systemd", False, PLACEHOLDER_SPEC),
    "systemd/user/dropsited.service": ("systemd", True, PLACEHOLDER_SPEC),
    f"launchd/{LAUNCHD_LABEL}.plist": ("launchd", True, PLACEHOLDER_SPEC),
    "ecosystem.config.js": ("pm2", True, PLACEHOLDER_PM2_SPEC),
}


def render_shipped_file(relative_path: str) -> str:
    """The text a shipped example file must have."""
    platform, user, spec = SHIPPED[relative_path]
    return render(platform, spec, user=user)
