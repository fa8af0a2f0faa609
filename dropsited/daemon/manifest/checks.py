"""The manifest keys of readiness, health, start order and the soft timeout: their
parsers (`ready`, `ready_check`, `health_check`, `after`, `timeout_signal`) and the rules
that involve other keys or other agents (`after` naming an unknown agent, or a cycle).

Kept apart from values.py and schema.py so those stay the table and the plain value
parsers; schema.py lists these parsers in its table and calls the two checks below.
"""

from __future__ import annotations

from typing import Any

import yaml

from .spec import AgentSpec, Probe
from .values import (
    NULL,
    Value,
    integer,
    parse_command,
    parse_name,
    parse_signal,
    seconds,
)
from .yaml_nodes import (
    BAD,
    NULL_TAG,
    ParseContext,
    check_keys,
    describe,
    join_path,
    pairs_of,
)

READY_MODES = ("line",)
_Field = tuple[Any, yaml.Node, str]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG


def probe(interval: float, timeout: float, with_failures: bool) -> Value:
    """A check command: a bare command (string or list), or a mapping with `command` and
    `interval`, `timeout` (and `failures` for a health check); null means none."""
    fields = {"command": parse_command,
              "interval": seconds(0, strict=True).doc(f"Seconds between runs (default {interval:g})."),
              "timeout": seconds(0, strict=True).doc(
                  f"A run still going after this many seconds failed (default {timeout:g}).")}
    if with_failures:
        fields["failures"] = integer(1).doc("Failed runs in a row that restart the agent (default 3).")

    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if _is_null(node):
            return None
        if not isinstance(node, yaml.MappingNode):
            command = parse_command(ctx, node, path)
            return BAD if command is BAD else Probe(command, interval, timeout)
        pairs = pairs_of(ctx, node, path)
        check_keys(ctx, pairs, tuple(fields), path)
        got = {k: fields[k](ctx, v, join_path(path, k)) for k, _, v in pairs if k in fields}
        if "command" not in got:
            ctx.error(node, path, "missing required key 'command'")
            return BAD
        if BAD in got.values():
            return BAD
        return Probe(**{"interval": interval, "timeout": timeout, **got})

    mapping = {"type": "object", "additionalProperties": False, "required": ["command"],
               "properties": {k: dict(v.schema) for k, v in fields.items()}}
    return Value(parse, {"anyOf": [dict(parse_command.schema), mapping, NULL]})


def _parse_after(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """Agent names this agent starts after; checked against the other agents later."""
    if _is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        ctx.error(node, path, f"expected a list of agent names, got {describe(node)}")
        return BAD
    names = [parse_name(ctx, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    return BAD if BAD in names else tuple(dict.fromkeys(names))


parse_after = Value(_parse_after, {"anyOf": [
    {"type": "array", "items": dict(parse_name.schema)}, NULL]})


def _parse_optional_signal(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    return None if _is_null(node) else parse_signal(ctx, node, path)


parse_optional_signal = Value(_parse_optional_signal, {"anyOf": [dict(parse_signal.schema), NULL]})


def _parse_ready(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    if _is_null(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.value == "line":
        return "line"
    ctx.error(node, path, f"expected 'line' or null, got {describe(node)}")
    return BAD


parse_ready = Value(_parse_ready, {"anyOf": [{"enum": list(READY_MODES)}, NULL]})


def cross_check(ctx: ParseContext, path: str, spec: AgentSpec, fields: dict[str, _Field],
                origin) -> None:
    """The rules of these keys that involve another key of the same agent."""
    def blame(key: str, message: str) -> None:
        node, where = origin(fields[key], path, key)
        ctx.error(node, where, message)

    if spec.ready is not None and spec.mode != "worker":
        blame("ready", f"'line' only applies to mode 'worker' (this agent's mode is {spec.mode!r})")
    if spec.health_check is not None and spec.mode == "exec":
        blame("health_check", "applies to mode 'worker' and 'service' (an exec agent's "
              "processes live for one task; use timeout)")
    if spec.timeout_signal is not None and spec.mode == "service":
        blame("timeout_signal", "a service takes no tasks from the daemon, so no task timeout "
              "applies to it")
    elif spec.timeout_signal is not None and spec.timeout is None:
        blame("timeout_signal", "needs a timeout: it is sent timeout_grace before it")
    if (spec.timeout_grace is not None and spec.timeout is not None
            and spec.timeout_grace >= spec.timeout):
        blame("timeout_grace", f"must be less than the timeout ({spec.timeout:g})")


def check_order(ctx: ParseContext, entries: list[tuple[str, _Field | None]],
                known: set[str]) -> None:
    """`after:` names known agents and makes no cycle; errors name the item's line.

    `entries` are the valid agents in file order: (name, the merged `after` field or
    None); `known` every name in the file (an agent with another error still exists)."""
    edges: dict[str, list[tuple[str, yaml.Node, str]]] = {}
    for name, field in entries:
        if field is None or field[0] is BAD or not field[0]:
            continue
        names, node, fpath = field
        items = node.value if isinstance(node, yaml.SequenceNode) else []
        for i, dep in enumerate(names):
            item = items[i] if i < len(items) else node
            where = f"{fpath}[{i}]"
            if dep not in known:
                ctx.error(item, where, f"no agent named {dep!r} in this file")
            else:
                edges.setdefault(name, []).append((dep, item, where))
    _report_cycles(ctx, edges)


def _report_cycles(ctx: ParseContext, edges: dict[str, list[tuple[str, yaml.Node, str]]]) -> None:
    """Depth-first search; each cycle is reported once, at the item that closes it."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        for dep, item, where in edges.get(name, []):
            if dep in trail:
                loop = " -> ".join(trail[trail.index(dep):] + [dep])
                ctx.error(item, where, f"start order cycle: {loop} (each waits for the next)")
            elif dep not in done:
                visit(dep, trail + [dep])
        done.add(name)

    for name in edges:
        if name not in done:
            visit(name, [name])
