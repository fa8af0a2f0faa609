"""The agents manifest (`agents.yaml`): its schema, its defaults and its error messages.

This is the only place that knows the YAML schema. It imports the standard library and
pyyaml only, so `dropsited check` and the daemon share it without pulling in click or psutil.

The YAML is composed into nodes (never constructed as a whole) and walked here by hand:
that is what keeps a line number on every error, catches duplicate keys (which PyYAML
silently overwrites) and lets us refuse alias bombs before anything is expanded. All errors
are collected, so a user fixes a manifest in one pass instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import shlex
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024  # a manifest is a few kB; anything bigger is a mistake or an attack
MAX_NODES = 10_000  # counted with aliases expanded, so "billion laughs" stops here
MAX_ERRORS = 100
MAX_SECONDS = 1e9  # ~31 years: any duration beyond this is a typo
MAX_SIZE = 2**63 - 1  # what setrlimit accepts
TASK_FILE = "{task_file}"

MODES = ("exec", "worker", "service")
INPUTS = ("stdin", "argv")
RESTARTS = ("always", "on-failure", "never")

# Same rule as dropsited.protocol.names.check_agent_name; repeated here because importing
# dropsited.protocol runs its package __init__ (workspace, agent loop) for one regex.
_AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*\Z")
_MAX_NAME = 64
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*\Z", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(i?B)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_VAR_RE = re.compile(r"\$(?:\$|\{([^}]*)\}|\{)")
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SIMPLE_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z")

_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR = (_TAG + t for t in ("null", "bool", "int", "float", "str"))
_MERGE = _TAG + "merge"


class ManifestError(ValueError):
    """The manifest cannot be used; `.errors` holds every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = [e.replace("\r", "\\r").replace("\n", "\\n") for e in errors]
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a crashed long-lived agent: initial * factor**n, capped at max."""

    initial: float = 1.0
    max: float = 60.0
    factor: float = 2.0


@dataclass(frozen=True)
class GiveUp:
    """FATAL after `failures` failed starts within `window` seconds, instead of spinning."""

    failures: int = 5
    window: float = 60.0


@dataclass(frozen=True)
class LogSpec:
    """Where an agent's output goes; `file=None` lets the daemon pick the place."""

    file: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3


@dataclass(frozen=True)
class AgentSpec:
    """One agent, with defaults applied and every value checked and normalised.

    Equality is what the daemon uses on reload to decide "definition changed", so every
    field is a plain comparable value (paths absolute, durations in float seconds).
    """

    name: str
    command: tuple[str, ...] | str
    cwd: Path
    env: dict[str, str] = field(hash=False)
    mode: str = "exec"
    input: str = "stdin"
    tags: tuple[str, ...] | None = None
    concurrency: int = 1
    timeout: float | None = None
    restart: str = "never"
    start_seconds: float = 1.0
    backoff: Backoff = Backoff()
    give_up: GiveUp = GiveUp()
    stop_signal: int = int(signal.SIGTERM)
    stop_grace: float = 10.0
    max_memory: int | None = None
    log: LogSpec = LogSpec()
    description: str | None = None
    role: str | None = None

    def argv(self, task_file: str | None = None) -> list[str]:
        """The argument vector to exec, with `{task_file}` filled in when a task is given.

        Plain str.replace, never str.format: task paths are data and must not be able to
        reach format fields. A string command goes through /bin/sh, so the path is quoted.
        """
        if isinstance(self.command, str):
            cmd = self.command
            if task_file is not None:
                cmd = cmd.replace(TASK_FILE, shlex.quote(task_file))
            return ["/bin/sh", "-c", cmd]
        if task_file is None:
            return list(self.command)
        return [part.replace(TASK_FILE, task_file) for part in self.command]

    def same_except_concurrency(self, other: AgentSpec) -> bool:
        """True if only `concurrency` differs: the daemon can then resize instead of restart."""
        return dataclasses.replace(self, concurrency=other.concurrency) == other

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (signal as its name, paths as strings)."""
        out = dataclasses.asdict(self)
        out["command"] = self.command if isinstance(self.command, str) else list(self.command)
        out["cwd"] = str(self.cwd)
        out["tags"] = None if self.tags is None else list(self.tags)
        out["stop_signal"] = signal.Signals(self.stop_signal).name
        out["log"]["file"] = None if self.log.file is None else str(self.log.file)
        return out


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: where it came from, the workspace, and its agents in file order."""

    path: Path
    workspace: Path
    agents: tuple[AgentSpec, ...]
    defaults_raw: dict[str, Any] | None = field(default=None, hash=False)

    def agent(self, name: str) -> AgentSpec | None:
        """The agent called `name`, or None."""
        return next((a for a in self.agents if a.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, used by `dropsited check --json`."""
        return {
            "path": str(self.path),
            "workspace": str(self.workspace),
            "defaults": self.defaults_raw,
            "agents": [a.to_dict() for a in self.agents],
        }


def load_manifest(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    workspace_override: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Read and parse a manifest file; raise ManifestError listing every problem."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ManifestError([f"{shown}: cannot read: {e.strerror or e}"]) from None
    return parse_manifest(data, path, environ=environ, workspace_override=workspace_override)


def parse_manifest(
    text: str | bytes,
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    workspace_override: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Parse manifest text; `path` names it in errors and anchors its relative paths."""
    ctx = _Ctx(os.fspath(path), os.environ if environ is None else environ)
    root = _compose(ctx, text)
    manifest = None
    if root is not None and not ctx.errors:
        manifest = _parse_root(ctx, root, Path(path), workspace_override)
    if ctx.errors or manifest is None:
        raise ManifestError(ctx.messages())
    return manifest


# --- reading YAML into nodes -------------------------------------------------------------


class _Ctx:
    """What every parsing helper needs: the file name, the environment, the errors so far."""

    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ
        self.base = Path(os.path.abspath(file)).parent
        # Builds scalar values only; per parse, because it caches every node it sees.
        self.constructor = yaml.SafeLoader("")
        self.errors: list[tuple[int, str]] = []

    def error(self, where: yaml.Node | int | None, path: str, message: str) -> None:
        """Record one error; `where` is the offending node (for its line) or a line number."""
        line = where.start_mark.line + 1 if isinstance(where, yaml.Node) else where
        prefix = self.file if line is None else f"{self.file}:{line}"
        self.errors.append(
            (line or 0, f"{prefix}: {path}: {message}" if path else f"{prefix}: {message}")
        )

    def messages(self) -> list[str]:
        """Errors in file order (stable, so same-line errors keep the order found)."""
        lines = [m for _, m in sorted(self.errors, key=lambda e: e[0])]
        if len(lines) > MAX_ERRORS:
            lines = lines[:MAX_ERRORS] + [
                f"{self.file}: ... and {len(lines) - MAX_ERRORS} more errors"
            ]
        return lines


def _compose(ctx: _Ctx, text: str | bytes) -> yaml.Node | None:
    """Decode and compose the document, reporting bad bytes, syntax errors and bombs."""
    if len(text) > MAX_BYTES:
        ctx.error(None, "", f"file is too large (more than {MAX_BYTES} bytes)")
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            ctx.error(line, "", f"not valid UTF-8 (byte 0x{text[e.start]:02x})")
            return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        ctx.error(_syntax_line(e), "", f"YAML syntax error: {_syntax_problem(e)}")
        return None
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        pos = getattr(e, "position", None)
        line = text[:pos].count("\n") + 1 if isinstance(pos, int) else None
        ctx.error(line, "", f"YAML syntax error: {_reader_problem(e)}")
        return None
    except RecursionError:
        ctx.error(None, "", "YAML syntax error: nesting is too deep")
        return None
    if root is None:
        ctx.error(None, "", "file is empty (expected a mapping with 'workspace' and 'agents')")
    elif _too_many_nodes(root):
        ctx.error(
            None,
            "",
            f"document is too large: more than {MAX_NODES} YAML nodes "
            "(aliases count each time they are used)",
        )
        return None
    return root


def _reader_problem(e: yaml.YAMLError) -> str:
    """'unacceptable character #x0000: special characters are not allowed' from a ReaderError."""
    char = getattr(e, "character", None)
    reason = getattr(e, "reason", None) or "unreadable text"
    if isinstance(char, str) and len(char) == 1:
        char = ord(char)
    return f"unacceptable character #x{char:04x}: {reason}" if isinstance(char, int) else reason


def _syntax_line(e: yaml.MarkedYAMLError) -> int | None:
    mark = e.problem_mark or e.context_mark
    return None if mark is None else mark.line + 1


def _syntax_problem(e: yaml.MarkedYAMLError) -> str:
    problem = e.problem or "invalid YAML"
    if e.context and e.context_mark is not None:
        return f"{problem} ({e.context} at line {e.context_mark.line + 1})"
    return f"{problem} ({e.context})" if e.context else problem


def _too_many_nodes(root: yaml.Node) -> bool:
    """Count nodes the way a constructor would see them: every alias use counts again.

    Iterative, so a recursive alias (`&a [*a]`) or deep nesting cannot blow the stack.
    """
    stack, seen = [root], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            return True
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
    return False


# --- generic node helpers ---------------------------------------------------------------


def _join(path: str, key: str) -> str:
    """Key path `agents[0].env.HOME`; odd keys are quoted so an error stays one line."""
    part = f".{key}" if _SIMPLE_KEY_RE.match(key) else f"[{_short(key)}]"
    return part[1:] if not path and part.startswith(".") else path + part


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _describe(node: yaml.Node) -> str:
    """How a value is shown after "got": quoted strings, bare numbers, kinds of collections."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if node.tag == _NULL:
        return "null"
    text = _short(node.value)
    return text[1:-1] if node.tag in (_BOOL, _INT, _FLOAT) else text


def _pairs(ctx: _Ctx, node: yaml.MappingNode, path: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) in order, with `<<` merges applied and duplicates reported."""
    explicit: dict[str, yaml.Node] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    merged: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if knode.tag == _MERGE:
            merged.extend(_merge_sources(ctx, vnode, path))
            continue
        if not isinstance(knode, yaml.ScalarNode):
            ctx.error(knode, path, f"keys must be plain strings, got {_describe(knode)}")
            continue
        key = knode.value
        if key in explicit:
            ctx.error(
                knode, _join(path, key), f"duplicate key (first at {_where(explicit[key], knode)})"
            )
            continue
        explicit[key] = knode
        out.append((key, knode, vnode))
    for key, knode, vnode in merged:
        if key not in explicit:
            explicit[key] = knode
            out.append((key, knode, vnode))
    return out


def _where(first: yaml.Node, again: yaml.Node) -> str:
    """'line 4', or 'line 4, column 9' when both are on one line (flow mappings)."""
    mark = first.start_mark
    same = mark.line == again.start_mark.line
    return f"line {mark.line + 1}, column {mark.column + 1}" if same else f"line {mark.line + 1}"


def _merge_sources(
    ctx: _Ctx, vnode: yaml.Node, path: str
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """The pairs a `<<: *anchor` (or `<<: [*a, *b]`) brings in, earlier sources first."""
    sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
    out = []
    for src in sources:
        if not isinstance(src, yaml.MappingNode):
            ctx.error(
                src, path, f"'<<' expects a mapping or a list of mappings, got {_describe(src)}"
            )
            continue
        out.extend(_pairs(ctx, src, path))
    return out


def _check_keys(
    ctx: _Ctx, pairs: list[tuple[str, yaml.Node, yaml.Node]], known: tuple[str, ...], path: str
) -> None:
    for key, knode, _ in pairs:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(knode, _join(path, key), f"unknown key{more}")


class _Bad:
    """Sentinel for "this value had an error, already reported"."""


_BAD: Any = _Bad()


def _scalar(ctx: _Ctx, node: yaml.Node, path: str, what: str) -> Any:
    """The Python value of a scalar node (int, float, bool, str...), or _BAD."""
    if not isinstance(node, yaml.ScalarNode):
        ctx.error(node, path, f"expected {what}, got {_describe(node)}")
        return _BAD
    try:
        return ctx.constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        ctx.error(node, path, f"expected {what}, got {_describe(node)} (tag {node.tag!r})")
        return _BAD


def _text(ctx: _Ctx, node: yaml.Node, path: str, what: str = "a string") -> Any:
    """Any non-null scalar as the text the user wrote (so `PORT: 8080` gives '8080')."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
        ctx.error(node, path, f"expected {what}, got {_describe(node)}")
        return _BAD
    # A resolved or explicit tag (`8080`, `!!int x`): the text must really be of that type.
    if node.tag != _STR and _scalar(ctx, node, path, what) is _BAD:
        return _BAD
    if "\x00" in node.value:
        ctx.error(node, path, "contains a NUL character")
        return _BAD
    return node.value


def _plain_data(ctx: _Ctx, node: yaml.Node) -> Any:
    """Node tree to plain JSON-friendly data (for `defaults_raw`); nodes are already counted."""
    if isinstance(node, yaml.MappingNode):
        return {
            str(k.value): _plain_data(ctx, v)
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode)
        }
    if isinstance(node, yaml.SequenceNode):
        return [_plain_data(ctx, v) for v in node.value]
    try:
        value = ctx.constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        return node.value
    return value if isinstance(value, (str, int, float, bool, type(None))) else node.value


# --- value parsers: (ctx, node, path) -> value or _BAD -------------------------------------


def _number(ctx: _Ctx, node: yaml.Node, path: str, what: str) -> Any:
    """An int or float (never a bool, never NaN or infinity)."""
    value = _scalar(ctx, node, path, what)
    if value is _BAD:
        return _BAD
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        ctx.error(node, path, f"expected {what}, got {_describe(node)}")
        return _BAD
    return value


def _at_least(
    ctx: _Ctx, node: yaml.Node, path: str, value: Any, low: float, strict: bool, high: float = 1e6
) -> Any:
    """Range check before any float()/int() conversion, so 1e999 or 10**400 is an error, not a crash.

    The upper bounds are far beyond any real use; they keep absurd values from overflowing
    the daemon's timers (threading refuses timeouts above ~9e9 s) or setrlimit.
    """
    if value is _BAD or value is None:
        return value
    if value < low or (strict and value == low):
        ctx.error(node, path, f"must be {'>' if strict else '>='} {low:g}, got {_describe(node)}")
        return _BAD
    if value > high:
        ctx.error(node, path, f"must be at most {high:g}, got {_describe(node)}")
        return _BAD
    return value


def _parse_seconds(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """Seconds as a number or a string like '30s', '5m', '1h', '1.5s', '250ms'."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        m = _DURATION_RE.match(node.value)
        if not m:
            ctx.error(node, path, f"expected seconds, got {_describe(node)}")
            return _BAD
        return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    return _number(ctx, node, path, "seconds")


def _seconds(low: float, strict: bool, nullable: bool = False) -> Callable[..., Any]:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        if nullable and node.tag == _NULL and isinstance(node, yaml.ScalarNode):
            return None
        value = _parse_seconds(ctx, node, path)
        value = _at_least(ctx, node, path, value, low, strict, MAX_SECONDS)
        return value if value is _BAD else float(value)

    return parse


def _parse_size(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """Bytes as an int or a string like '512K', '200M', '100MB', '1GiB' (K, M, G are 1024-based)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        m = _SIZE_RE.match(node.value)
        if not m:
            ctx.error(
                node, path, f"expected a size in bytes (like 512K, 200M, 1G), got {_describe(node)}"
            )
            return _BAD
        return float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    return _number(ctx, node, path, "a size in bytes (like 512K, 200M, 1G)")


def _size(nullable: bool) -> Callable[..., Any]:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        if nullable and node.tag == _NULL and isinstance(node, yaml.ScalarNode):
            return None
        value = _at_least(ctx, node, path, _parse_size(ctx, node, path), 1, False, MAX_SIZE)
        return value if value is _BAD else int(value)

    return parse


def _integer(low: int) -> Callable[..., Any]:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        value = _number(ctx, node, path, "an integer")
        if value is not _BAD and not isinstance(value, int):
            ctx.error(node, path, f"expected an integer, got {_describe(node)}")
            return _BAD
        return _at_least(ctx, node, path, value, low, strict=False)

    return parse


def _choice(options: tuple[str, ...]) -> Callable[..., Any]:
    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        shown = ", ".join(repr(o) for o in options)
        value = _text(ctx, node, path, f"one of {shown}")
        if value is not _BAD and value not in options:
            ctx.error(node, path, f"expected one of {shown}, got {_describe(node)}")
            return _BAD
        return value

    return parse


def _parse_name(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    name = _text(ctx, node, path, "an agent name")
    if name is _BAD:
        return _BAD
    problem = None
    if not name:
        problem = "agent name is empty"
    elif len(name) > _MAX_NAME:
        problem = f"agent name is {len(name)} characters long (at most {_MAX_NAME})"
    elif ".." in name or not _AGENT_RE.match(name):
        problem = (
            f"agent name {_short(name)} must start with a letter or digit and use only "
            "letters, digits and '_.@+-' (no '..')"
        )
    if problem:
        ctx.error(node, path, problem)
        return _BAD
    return name


def _parse_command(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """A list is exec'd as is; a string is run by /bin/sh -c."""
    if isinstance(node, yaml.SequenceNode):
        parts = [_text(ctx, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if _BAD in parts:
            return _BAD
        if not parts or not parts[0].strip():
            ctx.error(node, path, "the command list is empty or starts with an empty string")
            return _BAD
        return tuple(parts)
    cmd = _text(ctx, node, path, "a command (a list of strings, or a string for /bin/sh -c)")
    if cmd is not _BAD and not cmd.strip():
        ctx.error(node, path, "the command is empty")
        return _BAD
    return cmd


def _parse_path(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """A path, made absolute against the manifest's folder (not the caller's cwd)."""
    text = _text(ctx, node, path, "a path")
    if text is _BAD:
        return _BAD
    if not text.strip():
        ctx.error(node, path, "the path is empty")
        return _BAD
    return Path(os.path.normpath(ctx.base / text))


def _parse_optional_path(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    return _parse_path(ctx, node, path)


def _parse_env(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """Environment variables; `${VAR}` in values comes from the daemon's environment."""
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping of NAME: value, got {_describe(node)}")
        return _BAD
    env: dict[str, str] = {}
    ok = True
    for key, knode, vnode in _pairs(ctx, node, path):
        kpath = _join(path, key)
        if not key or "=" in key or "\x00" in key:
            ctx.error(knode, kpath, "not a usable variable name (empty, or has '=' or NUL)")
            ok = False
            continue
        value = _text(ctx, vnode, kpath)
        value = value if value is _BAD else _expand(ctx, vnode, kpath, value)
        if value is _BAD:
            ok = False
        else:
            env[key] = value
    return env if ok else _BAD


def _expand(ctx: _Ctx, node: yaml.Node, path: str, value: str) -> Any:
    """Replace `${VAR}` from ctx.environ and `$$` by `$`; any other `$` is kept as is."""
    problems: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name is None or not _VAR_NAME_RE.match(name):
            problems.append(
                f"bad variable reference {_short(m.group(0))} (write $$ for a literal $)"
            )
        elif name not in ctx.environ:
            problems.append(f"undefined variable ${{{name}}} (write $$ for a literal $)")
        else:
            return ctx.environ[name]
        return ""

    out = _VAR_RE.sub(sub, value)
    for problem in problems:
        ctx.error(node, path, problem)
    return _BAD if problems else out


def _parse_tags(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    """Tags this agent takes; null means every task that no other agent's tags claim."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    if not isinstance(node, yaml.SequenceNode):
        ctx.error(node, path, f"expected a list of tags, got {_describe(node)}")
        return _BAD
    if not node.value:
        ctx.error(
            node, path, "empty list: the agent would take no task (omit tags to take untagged work)"
        )
        return _BAD
    tags = [_text(ctx, item, f"{path}[{i}]", "a tag") for i, item in enumerate(node.value)]
    if _BAD in tags:
        return _BAD
    for i, (tag, item) in enumerate(zip(tags, node.value, strict=True)):
        if not tag.strip():
            ctx.error(item, f"{path}[{i}]", "empty tag")
            return _BAD
    return tuple(dict.fromkeys(tags))


def _parse_signal(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    text = _text(ctx, node, path, "a signal name like TERM")
    if text is _BAD:
        return _BAD
    name = text.strip().upper()
    if name.isdigit() and int(name) in {int(sig) for sig in signal.Signals}:
        return int(signal.Signals(int(name)))  # a number, as `kill -15` takes it
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__ or name.startswith("SIG_"):
        ctx.error(
            node,
            path,
            f"expected a signal name like TERM, INT, HUP, QUIT, USR1, KILL, got {_describe(node)}",
        )
        return _BAD
    return int(signal.Signals[name])


def _parse_description(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return None
    return _text(ctx, node, path)


def _sub_mapping(
    fields: dict[str, Callable[..., Any]], bare: str | None = None
) -> Callable[..., Any]:
    """A nested mapping (backoff, give_up, log) parsed to a dict of the keys it sets.

    Only the keys written are returned, so defaults and agent values merge key by key.
    `bare` names the key that a plain scalar sets (`backoff: 5` means initial: 5).
    """

    def parse(ctx: _Ctx, node: yaml.Node, path: str) -> Any:
        if bare is not None and isinstance(node, yaml.ScalarNode):
            value = fields[bare](ctx, node, path)
            return _BAD if value is _BAD else {bare: value}
        if not isinstance(node, yaml.MappingNode):
            ctx.error(
                node,
                path,
                f"expected a mapping with keys {', '.join(fields)}, got {_describe(node)}",
            )
            return _BAD
        pairs = _pairs(ctx, node, path)
        _check_keys(ctx, pairs, tuple(fields), path)
        out = {k: fields[k](ctx, v, _join(path, k)) for k, _, v in pairs if k in fields}
        return _BAD if _BAD in out.values() else out

    return parse


_BACKOFF_FIELDS = {
    "initial": _seconds(0, strict=True),
    "max": _seconds(0, strict=True),
    "factor": lambda c, n, p: _at_least(c, n, p, _number(c, n, p, "a number"), 1, False),
}
_GIVE_UP_FIELDS = {"failures": _integer(1), "window": _seconds(0, strict=True)}
_LOG_FIELDS = {
    "file": _parse_optional_path,
    "max_bytes": _size(nullable=False),
    "backups": _integer(0),
}

# Every per-agent key, in the order documented; `defaults:` takes all but name and command.
_AGENT_FIELDS: dict[str, Callable[..., Any]] = {
    "name": _parse_name,
    "command": _parse_command,
    "cwd": _parse_path,
    "env": _parse_env,
    "mode": _choice(MODES),
    "input": _choice(INPUTS),
    "tags": _parse_tags,
    "concurrency": _integer(1),
    "timeout": _seconds(0, strict=True, nullable=True),
    "restart": _choice(RESTARTS),
    "start_seconds": _seconds(0, strict=False),
    "backoff": _sub_mapping(_BACKOFF_FIELDS, bare="initial"),
    "give_up": _sub_mapping(_GIVE_UP_FIELDS, bare="failures"),
    "stop_signal": _parse_signal,
    "stop_grace": _seconds(0, strict=False),
    "max_memory": _size(nullable=True),
    "log": _sub_mapping(_LOG_FIELDS, bare="file"),
    "description": _parse_description,
    "role": _parse_description,
}
_AGENT_KEYS = tuple(_AGENT_FIELDS)
_REQUIRED = ("name", "command")
_TOP_KEYS = ("workspace", "defaults", "agents")


# --- the document: top level, defaults, agents ------------------------------------------

# A parsed key: its value (or _BAD), the node it came from, and the key path to name in errors.
_Field = tuple[Any, yaml.Node, str]


def _parse_fields(
    ctx: _Ctx,
    node: yaml.MappingNode,
    path: str,
    known: tuple[str, ...],
    forbidden: tuple[str, ...] = (),
) -> dict[str, _Field]:
    """Parse every known key of an agent (or of `defaults:`, which forbids name and command)."""
    pairs = _pairs(ctx, node, path)
    for key, knode, _ in pairs:
        if key in forbidden:
            ctx.error(knode, _join(path, key), "cannot be set in defaults (set it on each agent)")
    _check_keys(ctx, [p for p in pairs if p[0] not in forbidden], known, path)
    out = {}
    for key, _, vnode in pairs:
        if key in known:
            kpath = _join(path, key)
            out[key] = (_AGENT_FIELDS[key](ctx, vnode, kpath), vnode, kpath)
    return out


def _parse_root(
    ctx: _Ctx, root: yaml.Node, path: Path, override: str | os.PathLike[str] | None
) -> Manifest | None:
    if not isinstance(root, yaml.MappingNode):
        ctx.error(
            root,
            "",
            f"expected a mapping with 'workspace' and 'agents' at the top level, got {_describe(root)}",
        )
        return None
    pairs = _pairs(ctx, root, "")
    _check_keys(ctx, pairs, _TOP_KEYS, "")
    top = {key: vnode for key, _, vnode in pairs}
    workspace = _parse_workspace(ctx, root, top.get("workspace"), override)
    defaults = _parse_defaults(ctx, top.get("defaults"))
    agents = _parse_agents(ctx, root, top.get("agents"), defaults)
    if ctx.errors or workspace is _BAD:
        return None
    raw = (
        _plain_data(ctx, top["defaults"])
        if isinstance(top.get("defaults"), yaml.MappingNode)
        else None
    )
    return Manifest(path, workspace, tuple(agents), raw)


def _parse_workspace(
    ctx: _Ctx, root: yaml.Node, node: yaml.Node | None, override: str | os.PathLike[str] | None
) -> Any:
    """The workspace folder; a command-line override wins but the key is still checked."""
    value = _BAD if node is None else _parse_path(ctx, node, "workspace")
    if override is not None:
        return Path(os.path.abspath(override))
    if node is None:
        ctx.error(
            root, "", "missing required key 'workspace' (the folder holding the task folders)"
        )
    return value


def _parse_defaults(ctx: _Ctx, node: yaml.Node | None) -> dict[str, _Field]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
        return {}
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, "defaults", f"expected a mapping of per-agent keys, got {_describe(node)}")
        return {}
    allowed = tuple(k for k in _AGENT_KEYS if k not in _REQUIRED)
    return _parse_fields(ctx, node, "defaults", allowed, forbidden=_REQUIRED)


def _parse_agents(
    ctx: _Ctx, root: yaml.Node, node: yaml.Node | None, defaults: dict[str, _Field]
) -> list[AgentSpec]:
    if node is None:
        ctx.error(root, "", "missing required key 'agents' (a list of agents)")
        return []
    if not isinstance(node, yaml.SequenceNode):
        ctx.error(node, "agents", f"expected a list of agents, got {_describe(node)}")
        return []
    if not node.value:
        ctx.error(node, "agents", "the list is empty (define at least one agent)")
        return []
    agents: list[AgentSpec] = []
    names: dict[str, int] = {}
    for i, item in enumerate(node.value):
        path = f"agents[{i}]"
        if not isinstance(item, yaml.MappingNode):
            ctx.error(
                item, path, f"expected a mapping with 'name' and 'command', got {_describe(item)}"
            )
            continue
        own = _parse_fields(ctx, item, path, _AGENT_KEYS)
        for key in _REQUIRED:
            if key not in own:
                ctx.error(item, path, f"missing required key {key!r}")
        _check_unique_name(ctx, own.get("name"), names)
        spec = _build_agent(ctx, path, own, defaults)
        if spec is not None:
            agents.append(spec)
    return agents


def _check_unique_name(ctx: _Ctx, name: _Field | None, seen: dict[str, int]) -> None:
    if name is None or name[0] is _BAD:
        return
    value, node, path = name
    line = node.start_mark.line + 1
    if value in seen:
        ctx.error(node, path, f"duplicate agent name {value!r} (lines {seen[value]} and {line})")
    else:
        seen[value] = line


def _build_agent(
    ctx: _Ctx, path: str, own: dict[str, _Field], defaults: dict[str, _Field]
) -> AgentSpec | None:
    """Merge the agent's keys over `defaults:` over built-in defaults, then cross-check."""
    fields = {**defaults, **own}
    if any(key not in own for key in _REQUIRED) or any(
        f[0] is _BAD for f in [*defaults.values(), *own.values()]
    ):
        return None
    get = {key: f[0] for key, f in fields.items()}
    mode = get.get("mode", "exec")
    nested = {
        k: {**defaults.get(k, ({},))[0], **own.get(k, ({},))[0]}
        for k in ("backoff", "give_up", "log")
    }
    values = {
        **get,
        "env": {**defaults.get("env", ({},))[0], **own.get("env", ({},))[0]},
        "mode": mode,
        "restart": get.get("restart", "never" if mode == "exec" else "always"),
        "backoff": Backoff(**nested["backoff"]),
        "give_up": GiveUp(**nested["give_up"]),
        "log": LogSpec(**nested["log"]),
        "cwd": get.get("cwd", ctx.base),
    }
    spec = AgentSpec(**values)
    return spec if _cross_check(ctx, path, spec, fields) else None


def _cross_check(ctx: _Ctx, path: str, spec: AgentSpec, fields: dict[str, _Field]) -> bool:
    """Rules that involve more than one key; errors point at the key most likely wrong."""
    before = len(ctx.errors)
    cmd_node = fields["command"][1]
    cmd_parts = [spec.command] if isinstance(spec.command, str) else spec.command
    has_placeholder = any(TASK_FILE in part for part in cmd_parts)
    if spec.input == "argv" and spec.mode != "exec":
        node, where = _origin(fields["input"], path, "input")
        ctx.error(
            node, where, f"'argv' only applies to mode 'exec' (this agent's mode is {spec.mode!r})"
        )
    elif spec.input == "argv" and not has_placeholder:
        ctx.error(
            cmd_node,
            f"{path}.command",
            "input is 'argv' but the command has no {task_file} placeholder",
        )
    if spec.mode != "exec" and has_placeholder:
        ctx.error(
            cmd_node,
            f"{path}.command",
            f"{{task_file}} is only filled in for mode 'exec', not {spec.mode!r}",
        )
    if spec.backoff.max < spec.backoff.initial:
        node, where = _origin(fields["backoff"], path, "backoff")
        ctx.error(
            node,
            where,
            f"max ({spec.backoff.max:g}) is less than initial ({spec.backoff.initial:g})",
        )
    return len(ctx.errors) == before


def _origin(f: _Field, path: str, key: str) -> tuple[yaml.Node, str]:
    """Node and path to blame for a merged value, saying so when it came from `defaults:`."""
    _, node, fpath = f
    return (
        (node, f"{path}.{key}")
        if fpath.startswith("agents")
        else (node, f"{path}.{key} (from {fpath})")
    )
