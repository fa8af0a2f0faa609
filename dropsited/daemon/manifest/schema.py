"""The manifest's schema: which keys exist, which parser reads each, the defaults, and
the rules that involve two keys. This table is the one place that knows the YAML schema;
`dropsited check --schema` renders it as a JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .spec import (
    INPUTS,
    MODES,
    RESTARTS,
    TASK_FILE,
    AgentSpec,
    Backoff,
    GiveUp,
    LogSpec,
    Manifest,
    ManifestError,
)
from .values import (
    at_least,
    choice,
    integer,
    number,
    parse_command,
    parse_env,
    parse_name,
    parse_optional_path,
    parse_optional_text,
    parse_path,
    parse_signal,
    parse_tags,
    seconds,
    size,
    sub_mapping,
)
from .yaml_nodes import (
    BAD,
    MAX_BYTES,
    NULL_TAG,
    ParseContext,
    check_keys,
    compose,
    describe,
    join_path,
    pairs_of,
    plain_data,
)

BACKOFF_FIELDS = {
    "initial": seconds(0, strict=True),
    "max": seconds(0, strict=True),
    "factor": lambda c, n, p: at_least(c, n, p, number(c, n, p, "a number"), 1, False),
}
GIVE_UP_FIELDS = {"failures": integer(1), "window": seconds(0, strict=True)}
LOG_FIELDS = {
    "file": parse_optional_path,
    "max_bytes": size(nullable=False),
    "backups": integer(0),
}


# Every per-agent key, in the order documented; `defaults:` takes all but name and command.
AGENT_FIELDS: dict[str, Callable[..., Any]] = {
    "name": parse_name,
    "command": parse_command,
    "cwd": parse_path,
    "env": parse_env,
    "mode": choice(MODES),
    "input": choice(INPUTS),
    "tags": parse_tags,
    "concurrency": integer(1),
    "timeout": seconds(0, strict=True, nullable=True),
    "restart": choice(RESTARTS),
    "start_seconds": seconds(0, strict=False),
    "backoff": sub_mapping(BACKOFF_FIELDS, bare="initial"),
    "give_up": sub_mapping(GIVE_UP_FIELDS, bare="failures"),
    "stop_signal": parse_signal,
    "stop_grace": seconds(0, strict=False),
    "max_memory": size(nullable=True),
    "log": sub_mapping(LOG_FIELDS, bare="file"),
    "description": parse_optional_text,
    "role": parse_optional_text,
}
AGENT_KEYS = tuple(AGENT_FIELDS)
REQUIRED = ("name", "command")
TOP_KEYS = ("workspace", "defaults", "agents")

# A parsed key: its value (or BAD), the node it came from, and the key path to name in errors.
_Field = tuple[Any, yaml.Node, str]


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
    ctx = ParseContext(os.fspath(path), os.environ if environ is None else environ)
    root = compose(ctx, text)
    manifest = None
    if root is not None and not ctx.errors:
        manifest = _parse_root(ctx, root, Path(path), workspace_override)
    if ctx.errors or manifest is None:
        raise ManifestError(ctx.messages())
    return manifest


# --- the document: top level, defaults, agents ------------------------------------------


def _parse_fields(
    ctx: ParseContext,
    node: yaml.MappingNode,
    path: str,
    known: tuple[str, ...],
    forbidden: tuple[str, ...] = (),
) -> dict[str, _Field]:
    """Parse every known key of an agent (or of `defaults:`, which forbids name and command)."""
    pairs = pairs_of(ctx, node, path)
    for key, knode, _ in pairs:
        if key in forbidden:
            ctx.error(knode, join_path(path, key), "cannot be set in defaults (set it on each agent)")
    check_keys(ctx, [p for p in pairs if p[0] not in forbidden], known, path)
    out = {}
    for key, _, vnode in pairs:
        if key in known:
            kpath = join_path(path, key)
            out[key] = (AGENT_FIELDS[key](ctx, vnode, kpath), vnode, kpath)
    return out


def _parse_root(
    ctx: ParseContext, root: yaml.Node, path: Path, override: str | os.PathLike[str] | None
) -> Manifest | None:
    if not isinstance(root, yaml.MappingNode):
        ctx.error(
            root,
            "",
            f"expected a mapping with 'workspace' and 'agents' at the top level, got {describe(root)}",
        )
        return None
    pairs = pairs_of(ctx, root, "")
    check_keys(ctx, pairs, TOP_KEYS, "")
    top = {key: vnode for key, _, vnode in pairs}
    workspace = _parse_workspace(ctx, root, top.get("workspace"), override)
    defaults = _parse_defaults(ctx, top.get("defaults"))
    agents = _parse_agents(ctx, root, top.get("agents"), defaults)
    if ctx.errors or workspace is BAD:
        return None
    raw = (
        plain_data(ctx, top["defaults"])
        if isinstance(top.get("defaults"), yaml.MappingNode)
        else None
    )
    return Manifest(path, workspace, tuple(agents), raw)


def _parse_workspace(
    ctx: ParseContext, root: yaml.Node, node: yaml.Node | None, override: str | os.PathLike[str] | None
) -> Any:
    """The workspace folder; a command-line override wins but the key is still checked."""
    value = BAD if node is None else parse_path(ctx, node, "workspace")
    if override is not None:
        return Path(os.path.abspath(override))
    if node is None:
        ctx.error(
            root, "", "missing required key 'workspace' (the folder holding the task folders)"
        )
    return value


def _parse_defaults(ctx: ParseContext, node: yaml.Node | None) -> dict[str, _Field]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG):
        return {}
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, "defaults", f"expected a mapping of per-agent keys, got {describe(node)}")
        return {}
    allowed = tuple(k for k in AGENT_KEYS if k not in REQUIRED)
    return _parse_fields(ctx, node, "defaults", allowed, forbidden=REQUIRED)


def _parse_agents(
    ctx: ParseContext, root: yaml.Node, node: yaml.Node | None, defaults: dict[str, _Field]
) -> list[AgentSpec]:
    if node is None:
        ctx.error(root, "", "missing required key 'agents' (a list of agents)")
        return []
    if not isinstance(node, yaml.SequenceNode):
        ctx.error(node, "agents", f"expected a list of agents, got {describe(node)}")
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
                item, path, f"expected a mapping with 'name' and 'command', got {describe(item)}"
            )
            continue
        own = _parse_fields(ctx, item, path, AGENT_KEYS)
        for key in REQUIRED:
            if key not in own:
                ctx.error(item, path, f"missing required key {key!r}")
        _check_unique_name(ctx, own.get("name"), names)
        spec = _build_agent(ctx, path, own, defaults)
        if spec is not None:
            agents.append(spec)
    return agents


def _check_unique_name(ctx: ParseContext, name: _Field | None, seen: dict[str, int]) -> None:
    if name is None or name[0] is BAD:
        return
    value, node, path = name
    line = node.start_mark.line + 1
    if value in seen:
        ctx.error(node, path, f"duplicate agent name {value!r} (lines {seen[value]} and {line})")
    else:
        seen[value] = line


def _build_agent(
    ctx: ParseContext, path: str, own: dict[str, _Field], defaults: dict[str, _Field]
) -> AgentSpec | None:
    """Merge the agent's keys over `defaults:` over built-in defaults, then cross-check."""
    fields = {**defaults, **own}
    if any(key not in own for key in REQUIRED) or any(
        f[0] is BAD for f in [*defaults.values(), *own.values()]
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


def _cross_check(ctx: ParseContext, path: str, spec: AgentSpec, fields: dict[str, _Field]) -> bool:
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
