"""The manifest's schema: which keys exist, which parser reads each, the defaults, and
the rules that involve two keys. This table is the one place that knows the YAML schema;
`dropsited check --schema` renders it as a JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    Value,
    at_least_number,
    choice,
    integer,
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

# Every key: its parser, which also knows the JSON Schema of what it accepts, and one line
# of help (docs/MANIFEST.md says more). `dropsited check --schema` renders this table.
BACKOFF_FIELDS = {
    "initial": seconds(0, strict=True).doc("The first delay (default 1)."),
    "max": seconds(0, strict=True).doc("The longest delay, >= initial (default 60)."),
    "factor": at_least_number(1).doc("Growth per failure (default 2)."),
}
GIVE_UP_FIELDS = {
    "failures": integer(1).doc("Failures that make the agent FATAL (default 5)."),
    "window": seconds(0, strict=True).doc("Within this many seconds (default 60)."),
}
LOG_FIELDS = {
    "file": parse_optional_path.doc(
        "Relative to the manifest's folder; null: <workspace>/agents/logs/<name>.log."),
    "max_bytes": size(nullable=False).doc("Size at which the file rotates (default 10M)."),
    "backups": integer(0).doc("Rotated files kept (default 3)."),
}

# Every per-agent key, in the order documented; `defaults:` takes all but name and command.
AGENT_FIELDS: dict[str, Value] = {
    "name": parse_name.doc("1-64 characters: letters, digits and _.@+-, starting with a "
                           "letter or digit, no '..'. Unique in the file."),
    "command": parse_command.doc("A list of strings is exec'd directly; a string is run by "
                                 "/bin/sh -c."),
    "cwd": parse_path.doc("Working directory, relative to the manifest's folder (default)."),
    "env": parse_env.doc("Extra environment, NAME: value; ${VAR} is taken from the "
                         "daemon's environment, $$ is a literal $."),
    "mode": choice(MODES).doc("exec: one process per task (default); worker: long-lived, "
                              "JSON lines on stdin/stdout; service: long-lived, polls the "
                              "workspace itself."),
    "input": choice(INPUTS).doc("How an exec agent gets its task: stdin (default), or argv "
                                "(the command contains {task_file})."),
    "tags": parse_tags.doc("Task tags this agent takes; null or absent: every task whose "
                           "tags no other agent claims."),
    "concurrency": integer(1).doc("Tasks (exec) or processes (worker, service) at once "
                                  "(default 1)."),
    "timeout": seconds(0, strict=True, nullable=True).doc(
        "Duration per task: seconds, or '250ms', '30s', '5m', '1h'; null: none (default)."),
    "prefetch": integer(1).doc("worker mode: tasks one process holds at once, sent ahead "
                               "of its replies, which are matched by id (default 1)."),
    "restart": choice(RESTARTS).doc("Default: always for worker and service, never for exec."),
    "start_seconds": seconds(0, strict=False).doc(
        "How long a process must stay up to count as started (default 1)."),
    "backoff": sub_mapping(BACKOFF_FIELDS, bare="initial").doc(
        "Delay between restarts, and after an exec agent's failed start: initial * "
        "factor**n, capped at max. A bare number sets initial."),
    "give_up": sub_mapping(GIVE_UP_FIELDS, bare="failures").doc(
        "FATAL after `failures` failures within `window` seconds. A bare number sets failures."),
    "stop_signal": parse_signal.doc("Signal name (TERM, INT, HUP, ...), with or without SIG, "
                                    "any case (default TERM)."),
    "stop_grace": seconds(0, strict=False).doc(
        "Duration between stop_signal and SIGKILL (default 10)."),
    "max_memory": size(nullable=True).doc(
        "Bytes, or '512K', '200M', '1G': restarted beyond it; null: no limit (default)."),
    "log": sub_mapping(LOG_FIELDS, bare="file").doc(
        "Where the agent's output goes. A bare path sets file."),
    "description": parse_optional_text.doc("Free text, shown by status commands."),
    "role": parse_optional_text.doc("Free text."),
}
AGENT_KEYS = tuple(AGENT_FIELDS)
REQUIRED = ("name", "command")
TOP_KEYS = {
    "workspace": "The workspace folder, relative to this file's folder (required unless "
                 "-w/--workspace is given).",
    "defaults": "Per-agent keys (all but name and command) for every agent that does not "
                "set them.",
    "agents": "The agents, a non-empty list.",
}

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
    check_keys(ctx, pairs, tuple(TOP_KEYS), "")
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
    if spec.prefetch != 1 and spec.mode != "worker":
        node, where = _origin(fields["prefetch"], path, "prefetch")
        ctx.error(node, where, f"prefetch only applies to mode 'worker' (this agent's mode "
                  f"is {spec.mode!r})")
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
