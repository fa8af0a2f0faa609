"""The manifest's schema: which keys exist, which parser reads each, the defaults, and
the rules that involve two keys. This table is the one place that knows the YAML schema;
`dropsited check --schema` renders it as a JSON Schema.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import checks
from .hook_values import (
    MAX_RETRIES,
    bounded_integer,
    hook_list,
    parse_headers,
    parse_hook_name,
    parse_url,
    word_list,
)
from .sections import (
    parse_bool,
    parse_context,
    parse_retention,
    parse_schedules,
    parse_title,
    schedule_fields,
)
from .spec import (
    HOOK_BODIES,
    HOOK_EVENTS,
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

RATE_FIELDS = {
    "calls": integer(1).doc("Runs allowed per `per` seconds (default 60)."),
    "per": seconds(0, strict=True).doc("The window, in seconds (default 60)."),
}
# One entry of `on:` (top level or per agent), docs/HOOKS.md.
HOOK_FIELDS = {
    "name": parse_hook_name.doc("Names the hook in logs and status (default: its place, "
                                "on[0] or <agent>.on[0])."),
    "events": word_list(HOOK_EVENTS, "an event").doc(
        "Which events run the hook: " + ", ".join(HOOK_EVENTS) + "."),
    "command": parse_command.doc("Run this (a list is exec'd, a string goes to /bin/sh -c); "
                                 "the event is JSON on stdin and DROPSITED_* variables."),
    "url": parse_url.doc("POST the event as JSON here; ${VAR} is expanded."),
    "headers": parse_headers.doc("HTTP headers of a url hook; ${VAR} is expanded."),
    "body": choice(HOOK_BODIES).doc("event: the event JSON (default); text: {\"text\": "
                                    "summary}, as Slack-style incoming webhooks take."),
    "env": parse_env.doc("Extra environment of a command hook; ${VAR} is expanded."),
    "cwd": parse_path.doc("A command hook's working directory (default: the manifest's folder)."),
    "timeout": seconds(0, strict=True).doc("Per run; a command is killed at it (default 10s)."),
    "retries": bounded_integer(0, MAX_RETRIES).doc(
        "Runs after a failed one (default 3 for url, 0 for command; at most 10)."),
    "backoff": sub_mapping(BACKOFF_FIELDS, bare="initial").doc(
        "Delay between retries: initial * factor**n, capped at max (default 1, 30, 2)."),
    "rate": sub_mapping(RATE_FIELDS, bare="calls").doc(
        "At most `calls` runs per `per` seconds (default 60 per 60); the rest are dropped "
        "and counted."),
    "tags": word_list(None, "a tag").doc("Only tasks with one of these tags."),
    "agents": word_list(None, "an agent name").doc("Only events of these agents."),
    "folders": word_list(("done", "failed", "feedback", "blocked", "inbox", "quarantine"),
                         "a folder").doc("Only events whose task went to one of these folders "
                                         "(a failed attempt that is retried: inbox)."),
}
HOOKS = hook_list(HOOK_FIELDS)

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
    "on": HOOKS.doc("Event hooks for this agent's events (docs/HOOKS.md); in defaults: a "
                    "copy for each agent that sets none."),
    # readiness, health, start order, soft timeout: parsers and rules in checks.py
    "ready": checks.parse_ready.doc(
        "worker: 'line' waits for a {\"ready\": true} line on stdout before it takes tasks."),
    "ready_check": checks.probe(1.0, 5.0, with_failures=False).doc(
        "A command polled until it exits 0; only then is the agent RUNNING (until start_timeout)."),
    "start_timeout": seconds(0, strict=True).doc(
        "With ready or ready_check: not ready by then is a failed start (default 60)."),
    "health_check": checks.probe(10.0, 5.0, with_failures=True).doc(
        "worker, service: a command run every interval; `failures` fails in a row restart it."),
    "after": checks.parse_after.doc(
        "Agents that must be RUNNING before this one starts; it stops before them."),
    "timeout_signal": checks.parse_optional_signal.doc(
        "Signal sent timeout_grace before the timeout, to save partial work (default none)."),
    "timeout_grace": seconds(0, strict=True, nullable=True).doc(
        "Seconds before the timeout that timeout_signal is sent (default half the timeout, "
        "at most 10)."),
}
AGENT_KEYS = tuple(AGENT_FIELDS)

# `schedules:` (docs/MANIFEST.md "Schedules"): each entry, and the task it drops.
TASK_FIELDS = {
    "title": parse_title.doc("The task's title (required)."),
    "from": parse_name.doc("created_by of the task (default dropsited)."),
    "tags": parse_tags.doc("The task's tags (which agents take it)."),
    "assign": parse_name.doc("Assign it to this agent only."),
    "context": parse_context.doc("The task's context (its payload), a mapping."),
    "priority": integer(1).doc("1 is highest (default 5)."),
    "max_retries": integer(0).doc("Failed attempts retried (default 3)."),
    "description": parse_optional_text.doc("Free text."),
}
SCHEDULE_FIELDS = schedule_fields(TASK_FIELDS, parse_name,
                                  seconds(1, strict=False, nullable=False))
# `retention:` (docs/MANIFEST.md "Retention"): what the daemon archives, and how fast.
RETENTION_FIELDS = {
    "done": seconds(0, strict=True, nullable=True).doc(
        "Archive done/ tasks finished longer ago than this ('7d'); null: keep them."),
    "failed": seconds(0, strict=True, nullable=True).doc(
        "The same for failed/ ('30d'); null: keep them."),
    "compress": parse_bool.doc("One gzip'ed JSON-lines file per day instead of one JSON "
                               "file per task (default false)."),
    "interval": seconds(1, strict=False).doc("How often the daemon looks (default 10m)."),
    "rate": integer(1).doc("Files moved per second at most (default 200)."),
}
REQUIRED = ("name", "command")
TOP_KEYS = {
    "workspace": "The workspace folder, relative to this file's folder (required unless "
                 "-w/--workspace is given).",
    "defaults": "Per-agent keys (all but name and command) for every agent that does not "
                "set them.",
    "agents": "The agents, a non-empty list.",
    "schedules": "Tasks dropped on a cron expression or an interval, by name.",
    "retention": "Finished tasks the daemon moves to archive/ once they are old enough.",
    "on": "Event hooks for every agent's events and the workspace's (docs/HOOKS.md).",
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
    schedules = parse_schedules(ctx, top.get("schedules"), SCHEDULE_FIELDS)
    retention = parse_retention(ctx, top.get("retention"), RETENTION_FIELDS)
    hooks = () if "on" not in top else HOOKS(ctx, top["on"], "on")
    if ctx.errors or workspace is BAD:
        return None
    hooks = tuple(dataclasses.replace(h, name=h.name or f"on[{i}]") for i, h in enumerate(hooks))
    raw = (
        plain_data(ctx, top["defaults"])
        if isinstance(top.get("defaults"), yaml.MappingNode)
        else None
    )
    return Manifest(path, workspace, tuple(agents), raw, schedules=schedules,
                    retention=retention, on=hooks)


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
    order: list[tuple[str, _Field | None]] = []
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
            order.append((spec.name, own.get("after", defaults.get("after"))))
    checks.check_order(ctx, order, set(names))
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
        "on": tuple(dataclasses.replace(h, agent=get["name"], name=f"{get['name']}."
                                        f"{h.name or f'on[{i}]'}")
                    for i, h in enumerate(get.get("on", ()))),
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
    checks.cross_check(ctx, path, spec, fields, _origin)
    return len(ctx.errors) == before


def _origin(f: _Field, path: str, key: str) -> tuple[yaml.Node, str]:
    """Node and path to blame for a merged value, saying so when it came from `defaults:`."""
    _, node, fpath = f
    return (
        (node, f"{path}.{key}")
        if fpath.startswith("agents")
        else (node, f"{path}.{key} (from {fpath})")
    )
