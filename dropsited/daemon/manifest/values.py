"""Value parsers: (ctx, node, path) -> value, or BAD after reporting why.

Durations, sizes, signals, `${VAR}` in env values, paths relative to the manifest,
commands, tags and agent names. Each is a `Value`: the parser and the JSON Schema of
what it accepts, side by side, so `dropsited check --schema` cannot drift from the
parser. Factories (`seconds(...)`, `size(...)`, `choice(...)`) make them with their
bounds; the schema table (schema.py) says which key uses which.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...protocol.errors import InvalidName
from ...protocol.names import AGENT_NAME_PATTERN, MAX_AGENT_LEN, check_agent_name
from .yaml_nodes import (
    BAD,
    NULL_TAG,
    STR_TAG,
    ParseContext,
    check_keys,
    describe,
    join_path,
    pairs_of,
    scalar_text,
    scalar_value,
    short,
)

MAX_SECONDS = 1e9  # ~31 years: any duration beyond this is a typo
MAX_SIZE = 2**63 - 1  # what setrlimit accepts
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*\Z", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(i?B)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_VAR_RE = re.compile(r"\$(?:\$|\{([^}]*)\}|\{)")
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The same rules as JSON Schema patterns (ECMA 262: no inline flags, so [sS] for any case).
_NUMBER = r"^\s*(\d+(\.\d*)?|\.\d+)\s*"
DURATION_PATTERN = _NUMBER + r"([mM][sS]|[sSmMhHdD])?\s*$"
SIZE_PATTERN = _NUMBER + r"([kKmMgGtT]?)([iI]?[bB])?\s*$"
TEXT = {"type": ["string", "number", "boolean"]}  # any non-null scalar, taken as written
NULL = {"type": "null"}
Parser = Callable[[ParseContext, yaml.Node, str], Any]


@dataclass(frozen=True)
class Value:
    """A value parser and the JSON Schema (draft-07) of the YAML values it accepts."""

    parse: Parser
    schema: Mapping[str, Any]

    def __call__(self, ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        return self.parse(ctx, node, path)

    def doc(self, text: str) -> Value:
        """The same value, described (editors show it on hover)."""
        return dataclasses.replace(self, schema={**self.schema, "description": text})


def _or_null(schema: Mapping[str, Any], nullable: bool) -> dict[str, Any]:
    return {"anyOf": [dict(schema), NULL]} if nullable else dict(schema)


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def number(ctx: ParseContext, node: yaml.Node, path: str, what: str) -> Any:
    """An int or float (never a bool, never NaN or infinity)."""
    value = scalar_value(ctx, node, path, what)
    if value is BAD:
        return BAD
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        ctx.error(node, path, f"expected {what}, got {describe(node)}")
        return BAD
    return value


def at_least(ctx: ParseContext, node: yaml.Node, path: str, value: Any, low: float,
             strict: bool, high: float = 1e6) -> Any:
    """Range check before any float()/int() conversion, so 1e999 or 10**400 is an error, not a crash.

    The upper bounds are far beyond any real use; they keep absurd values from overflowing
    the daemon's timers (threading refuses timeouts above ~9e9 s) or setrlimit.
    """
    if value is BAD or value is None:
        return value
    if value < low or (strict and value == low):
        ctx.error(node, path, f"must be {'>' if strict else '>='} {low:g}, got {describe(node)}")
        return BAD
    if value > high:
        ctx.error(node, path, f"must be at most {high:g}, got {describe(node)}")
        return BAD
    return value


def _parse_seconds(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """Seconds as a number or a string like '30s', '5m', '1h', '1.5s', '250ms'."""
    if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        m = _DURATION_RE.match(node.value)
        if not m:
            ctx.error(node, path, f"expected seconds, got {describe(node)}")
            return BAD
        return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    return number(ctx, node, path, "seconds")


def seconds(low: float, strict: bool, nullable: bool = False) -> Value:
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if nullable and node.tag == NULL_TAG and isinstance(node, yaml.ScalarNode):
            return None
        value = _parse_seconds(ctx, node, path)
        value = at_least(ctx, node, path, value, low, strict, MAX_SECONDS)
        return value if value is BAD else float(value)

    bound = {"exclusiveMinimum" if strict else "minimum": low, "maximum": MAX_SECONDS}
    duration = {"anyOf": [{"type": "number", **bound},
                          {"type": "string", "pattern": DURATION_PATTERN}]}
    return Value(parse, _or_null(duration, nullable))


def _parse_size(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """Bytes as an int or a string like '512K', '200M', '100MB', '1GiB' (K, M, G are 1024-based)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        m = _SIZE_RE.match(node.value)
        if not m:
            ctx.error(node, path,
                      f"expected a size in bytes (like 512K, 200M, 1G), got {describe(node)}")
            return BAD
        return float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    return number(ctx, node, path, "a size in bytes (like 512K, 200M, 1G)")


def size(nullable: bool) -> Value:
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if nullable and node.tag == NULL_TAG and isinstance(node, yaml.ScalarNode):
            return None
        value = at_least(ctx, node, path, _parse_size(ctx, node, path), 1, False, MAX_SIZE)
        return value if value is BAD else int(value)

    size_ = {"anyOf": [{"type": "number", "minimum": 1, "maximum": MAX_SIZE},
                       {"type": "string", "pattern": SIZE_PATTERN}]}
    return Value(parse, _or_null(size_, nullable))


def integer(low: int) -> Value:
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        value = number(ctx, node, path, "an integer")
        if value is not BAD and not isinstance(value, int):
            ctx.error(node, path, f"expected an integer, got {describe(node)}")
            return BAD
        return at_least(ctx, node, path, value, low, strict=False)

    return Value(parse, {"type": "integer", "minimum": low, "maximum": 10**6})


def at_least_number(low: float) -> Value:
    """A number >= `low` (backoff's factor)."""
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        return at_least(ctx, node, path, number(ctx, node, path, "a number"), low, False)

    return Value(parse, {"type": "number", "minimum": low, "maximum": 10**6})


def choice(options: tuple[str, ...]) -> Value:
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        shown = ", ".join(repr(o) for o in options)
        value = scalar_text(ctx, node, path, f"one of {shown}")
        if value is not BAD and value not in options:
            ctx.error(node, path, f"expected one of {shown}, got {describe(node)}")
            return BAD
        return value

    return Value(parse, {"enum": list(options)})


def _parse_name(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """An agent name by protocol/names.py's rule, with the manifest's wording of a refusal."""
    name = scalar_text(ctx, node, path, "an agent name")
    if name is BAD:
        return BAD
    try:
        return check_agent_name(name)
    except InvalidName:
        pass
    if not name:
        problem = "agent name is empty"
    elif len(name) > MAX_AGENT_LEN:
        problem = f"agent name is {len(name)} characters long (at most {MAX_AGENT_LEN})"
    else:
        problem = (
            f"agent name {short(name)} must start with a letter or digit and use only "
            "letters, digits and '_.@+-' (no '..')"
        )
    ctx.error(node, path, problem)
    return BAD


parse_name = Value(_parse_name, {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": MAX_AGENT_LEN,
     "pattern": f"^{AGENT_NAME_PATTERN}$", "not": {"pattern": r"\.\."}},
    {"type": "integer", "minimum": 0}]})


def _parse_command(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """A list is exec'd as is; a string is run by /bin/sh -c."""
    if isinstance(node, yaml.SequenceNode):
        parts = [scalar_text(ctx, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if BAD in parts:
            return BAD
        if not parts or not parts[0].strip():
            ctx.error(node, path, "the command list is empty or starts with an empty string")
            return BAD
        return tuple(parts)
    cmd = scalar_text(ctx, node, path, "a command (a list of strings, or a string for /bin/sh -c)")
    if cmd is not BAD and not cmd.strip():
        ctx.error(node, path, "the command is empty")
        return BAD
    return cmd


parse_command = Value(_parse_command, {"anyOf": [
    {"type": "string", "pattern": r"\S"}, {"type": ["number", "boolean"]},
    {"type": "array", "minItems": 1, "items": TEXT}]})


def _parse_path(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """A path, made absolute against the manifest's folder (not the caller's cwd)."""
    text = scalar_text(ctx, node, path, "a path")
    if text is BAD:
        return BAD
    if not text.strip():
        ctx.error(node, path, "the path is empty")
        return BAD
    return Path(os.path.normpath(ctx.base / text))


parse_path = Value(_parse_path, {"anyOf": [{"type": "string", "pattern": r"\S"},
                                           {"type": ["number", "boolean"]}]})


def _parse_optional_path(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
        return None
    return parse_path(ctx, node, path)


parse_optional_path = Value(_parse_optional_path, _or_null(parse_path.schema, True))


def _parse_env(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """Environment variables; `${VAR}` in values comes from the daemon's environment."""
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping of NAME: value, got {describe(node)}")
        return BAD
    env: dict[str, str] = {}
    ok = True
    for key, knode, vnode in pairs_of(ctx, node, path):
        kpath = join_path(path, key)
        if not key or "=" in key or "\x00" in key:
            ctx.error(knode, kpath, "not a usable variable name (empty, or has '=' or NUL)")
            ok = False
            continue
        value = scalar_text(ctx, vnode, kpath)
        value = value if value is BAD else _expand(ctx, vnode, kpath, value)
        if value is BAD:
            ok = False
        else:
            env[key] = value
    return env if ok else BAD


parse_env = Value(_parse_env, {"type": "object", "additionalProperties": TEXT,
                               "propertyNames": {"pattern": "^[^=\u0000]+$"}})


def _expand(ctx: ParseContext, node: yaml.Node, path: str, value: str) -> Any:
    """Replace `${VAR}` from ctx.environ and `$$` by `$`; any other `$` is kept as is."""
    problems: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name is None or not _VAR_NAME_RE.match(name):
            problems.append(f"bad variable reference {short(m.group(0))} (write $$ for a literal $)")
        elif name not in ctx.environ:
            problems.append(f"undefined variable ${{{name}}} (write $$ for a literal $)")
        else:
            return ctx.environ[name]
        return ""

    out = _VAR_RE.sub(sub, value)
    for problem in problems:
        ctx.error(node, path, problem)
    return BAD if problems else out


def _parse_tags(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """Tags this agent takes; null means every task that no other agent's tags claim."""
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
        return None
    if not isinstance(node, yaml.SequenceNode):
        ctx.error(node, path, f"expected a list of tags, got {describe(node)}")
        return BAD
    if not node.value:
        ctx.error(node, path,
                  "empty list: the agent would take no task (omit tags to take untagged work)")
        return BAD
    tags = [scalar_text(ctx, item, f"{path}[{i}]", "a tag") for i, item in enumerate(node.value)]
    if BAD in tags:
        return BAD
    for i, (tag, item) in enumerate(zip(tags, node.value, strict=True)):
        if not tag.strip():
            ctx.error(item, f"{path}[{i}]", "empty tag")
            return BAD
    return tuple(dict.fromkeys(tags))


parse_tags = Value(_parse_tags, _or_null({"type": "array", "minItems": 1, "items": TEXT}, True))


def _parse_signal(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    text = scalar_text(ctx, node, path, "a signal name like TERM")
    if text is BAD:
        return BAD
    name = text.strip().upper()
    if name.isdigit() and int(name) in {int(sig) for sig in signal.Signals}:
        return int(signal.Signals(int(name)))  # a number, as `kill -15` takes it
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__ or name.startswith("SIG_"):
        ctx.error(node, path, "expected a signal name like TERM, INT, HUP, QUIT, USR1, KILL, "
                  f"got {describe(node)}")
        return BAD
    return int(signal.Signals[name])


# Looser than the parser (which knows this system's signals), never stricter: an editor
# must not flag what `dropsited check` accepts, and the schema is the same everywhere.
parse_signal = Value(_parse_signal, {"anyOf": [
    {"type": "string", "pattern": f"^\\s*({_any_case('SIG')})?[A-Za-z][A-Za-z0-9+]*\\s*$"},
    {"type": "integer", "minimum": 1, "maximum": 64}]})


def _parse_optional_text(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
        return None
    return scalar_text(ctx, node, path)


parse_optional_text = Value(_parse_optional_text, _or_null(TEXT, True))


def sub_mapping(fields: dict[str, Value], bare: str | None = None) -> Value:
    """A nested mapping (backoff, give_up, log) parsed to a dict of the keys it sets.

    Only the keys written are returned, so defaults and agent values merge key by key.
    `bare` names the key that a plain scalar sets (`backoff: 5` means initial: 5).
    """

    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if bare is not None and isinstance(node, yaml.ScalarNode):
            value = fields[bare](ctx, node, path)
            return BAD if value is BAD else {bare: value}
        if not isinstance(node, yaml.MappingNode):
            ctx.error(node, path,
                      f"expected a mapping with keys {', '.join(fields)}, got {describe(node)}")
            return BAD
        pairs = pairs_of(ctx, node, path)
        check_keys(ctx, pairs, tuple(fields), path)
        out = {k: fields[k](ctx, v, join_path(path, k)) for k, _, v in pairs if k in fields}
        return BAD if BAD in out.values() else out

    mapping = {"type": "object", "additionalProperties": False,
               "properties": {k: dict(v.schema) for k, v in fields.items()}}
    return Value(parse, {"anyOf": [dict(fields[bare].schema), mapping]} if bare else mapping)
