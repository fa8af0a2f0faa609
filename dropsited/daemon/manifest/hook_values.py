"""Value parsers of `on:` (event hooks, docs/HOOKS.md): the list of hooks, their events,
URLs, headers and filters, and the rules that involve two keys of one hook.

The key table itself is schema.py's (HOOK_FIELDS); `hook_list(fields)` makes the
`Value` that reads a list of hooks with it, so `dropsited check --schema` renders the
hooks' keys from the same table as every other key.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import yaml

from .spec import HOOK_EVENTS, TASK_EVENTS, Backoff, HookSpec, RateLimit
from .values import Value, _expand, at_least, number
from .yaml_nodes import (
    BAD,
    NULL_TAG,
    ParseContext,
    check_keys,
    describe,
    join_path,
    pairs_of,
    scalar_text,
    short,
)

MAX_HOOKS = 64  # per `on:` list; more is a generated manifest gone wrong
MAX_RETRIES = 10  # "never retried for ever": the bound is in the schema
HOOK_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_HOOK_NAME_RE = re.compile(HOOK_NAME_PATTERN + r"\Z")
# RFC 9110 field names (tokens); values may not hold CR, LF or NUL (header injection).
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_FOLDERS = ("done", "failed", "feedback", "blocked", "inbox", "quarantine")
DEFAULT_URL_RETRIES = 3
TEXT = {"type": ["string", "number", "boolean"]}


def bounded_integer(low: int, high: int) -> Value:
    """An integer in [low, high] (a hook's retries)."""
    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        value = number(ctx, node, path, "an integer")
        if value is not BAD and not isinstance(value, int):
            ctx.error(node, path, f"expected an integer, got {describe(node)}")
            return BAD
        return at_least(ctx, node, path, value, low, strict=False, high=high)

    return Value(parse, {"type": "integer", "minimum": low, "maximum": high})


def _parse_hook_name(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    name = scalar_text(ctx, node, path, "a hook name")
    if name is not BAD and not _HOOK_NAME_RE.match(name):
        ctx.error(node, path, f"hook name {short(name)} must be 1-64 letters, digits, '_' or "
                  "'-', starting with a letter or digit")
        return BAD
    return name


parse_hook_name = Value(_parse_hook_name, {"type": "string", "pattern": f"^{HOOK_NAME_PATTERN}$"})


def word_list(options: tuple[str, ...] | None, what: str) -> Value:
    """One word or a list of words (events, folders, tags, agent names): a tuple."""
    def one(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        word = scalar_text(ctx, node, path, what)
        if word is BAD:
            return BAD
        if not word.strip():
            ctx.error(node, path, f"empty {what}")
            return BAD
        if options is not None and word not in options:
            shown = ", ".join(options)
            ctx.error(node, path, f"expected one of {shown}, got {describe(node)}")
            return BAD
        return word

    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag != NULL_TAG:
            word = one(ctx, node, path)
            return BAD if word is BAD else (word,)
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            ctx.error(node, path, f"expected a {what} or a non-empty list of them, "
                      f"got {describe(node)}")
            return BAD
        words = [one(ctx, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return BAD if BAD in words else tuple(dict.fromkeys(words))

    item = {"enum": list(options)} if options is not None else TEXT
    return Value(parse, {"anyOf": [item, {"type": "array", "minItems": 1, "items": item}]})


def _parse_url(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """An http(s) URL; `${VAR}` is expanded (a webhook's URL is often its secret)."""
    text = scalar_text(ctx, node, path, "a URL")
    if text is BAD:
        return BAD
    url = _expand(ctx, node, path, text)
    if url is BAD:
        return BAD
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        ctx.error(node, path, "expected an http:// or https:// URL with a host, got "
                  f"{short(text)}")
        return BAD
    if any(c in url for c in "\r\n\x00 "):
        ctx.error(node, path, "a URL cannot hold spaces, CR, LF or NUL")
        return BAD
    return url.strip()


# Looser than the parser: before `${VAR}` is expanded the scheme may be in the variable.
parse_url = Value(_parse_url, {"type": "string",
                               "pattern": "^\\s*([hH][tT][tT][pP][sS]?://|\\$\\{)"})


def _parse_headers(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """HTTP headers, Name: value; `${VAR}` in values comes from the daemon's environment."""
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping of Header-Name: value, got {describe(node)}")
        return BAD
    headers: dict[str, str] = {}
    for key, knode, vnode in pairs_of(ctx, node, path):
        kpath = join_path(path, key)
        if not _HEADER_NAME_RE.match(key):
            ctx.error(knode, kpath, "not an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)")
            headers[key] = BAD
            continue
        value = scalar_text(ctx, vnode, kpath)
        value = value if value is BAD else _expand(ctx, vnode, kpath, value)
        if value is not BAD and any(c in value for c in "\r\n\x00"):
            ctx.error(vnode, kpath, "a header value cannot hold CR, LF or NUL")
            value = BAD
        headers[key] = value
    return BAD if BAD in headers.values() else headers


parse_headers = Value(_parse_headers, {
    "type": "object", "additionalProperties": TEXT,
    "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}})


def hook_list(fields: dict[str, Value]) -> Value:
    """The `on:` list: each item a mapping of `fields`, built into a HookSpec.

    Names not given are left empty; schema.py names them by place (`on[0]`,
    `coder.on[1]`) once it knows the agent.
    """

    def parse(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            ctx.error(node, path, f"expected a list of hooks, got {describe(node)}")
            return BAD
        if len(node.value) > MAX_HOOKS:
            ctx.error(node, path, f"{len(node.value)} hooks (at most {MAX_HOOKS})")
            return BAD
        hooks = [_one_hook(ctx, item, f"{path}[{i}]", fields) for i, item in enumerate(node.value)]
        if BAD in hooks:
            return BAD
        _check_unique(ctx, node, path, hooks)
        return tuple(hooks)

    item = {"type": "object", "required": ["events"], "additionalProperties": False,
            "properties": {k: dict(v.schema) for k, v in fields.items()}}
    return Value(parse, {"anyOf": [{"type": "array", "maxItems": MAX_HOOKS, "items": item},
                                   {"type": "null"}]})


def _one_hook(ctx: ParseContext, node: yaml.Node, path: str, fields: dict[str, Value]) -> Any:
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping with 'events' and 'command' or 'url', "
                  f"got {describe(node)}")
        return BAD
    pairs = pairs_of(ctx, node, path)
    check_keys(ctx, pairs, tuple(fields), path)
    got = {k: (fields[k](ctx, v, join_path(path, k)), v) for k, _, v in pairs if k in fields}
    if any(value is BAD for value, _ in got.values()):
        return BAD
    if "events" not in got:
        ctx.error(node, path, f"missing required key 'events' (some of {', '.join(HOOK_EVENTS)})")
        return BAD
    if ("command" in got) == ("url" in got):
        ctx.error(node, path, "give exactly one of 'command' (run a program) and 'url' (POST)")
        return BAD
    if "command" in got:
        for key in ("headers", "body"):
            if key in got:
                ctx.error(got[key][1], join_path(path, key), "only applies to a 'url' hook")
                return BAD
    elif "env" in got:
        ctx.error(got["env"][1], join_path(path, "env"), "only applies to a 'command' hook")
        return BAD
    return _build(ctx, path, {k: value for k, (value, _) in got.items()}, got)


def _build(ctx: ParseContext, path: str, values: dict[str, Any], got: dict) -> Any:
    backoff = Backoff(**{**{"initial": 1.0, "max": 30.0}, **values.pop("backoff", {})})
    if backoff.max < backoff.initial:
        ctx.error(got["backoff"][1], join_path(path, "backoff"),
                  f"max ({backoff.max:g}) is less than initial ({backoff.initial:g})")
        return BAD
    if "folders" in values and not set(values["events"]) & set(TASK_EVENTS):
        ctx.error(got["folders"][1], join_path(path, "folders"),
                  "filters task events, and this hook has none of them")
        return BAD
    if "tags" in values and not (set(values["events"]) - {"quarantined"}) & set(TASK_EVENTS):
        node = got["tags"][1]
        ctx.error(node, join_path(path, "tags"), "filters task events (not quarantined), and "
                  "this hook has none of them")
        return BAD
    if "retries" not in values:
        values["retries"] = DEFAULT_URL_RETRIES if "url" in values else 0
    rate = RateLimit(**values.pop("rate", {}))
    return HookSpec(name=values.pop("name", ""), backoff=backoff, rate=rate, cwd=values.pop(
        "cwd", ctx.base), **values)


def _check_unique(ctx: ParseContext, node: yaml.SequenceNode, path: str, hooks: list) -> None:
    seen: dict[str, int] = {}
    for i, hook in enumerate(hooks):
        if hook.name and hook.name in seen:
            ctx.error(node.value[i], f"{path}[{i}].name",
                      f"duplicate hook name {hook.name!r} (also {path}[{seen[hook.name]}])")
        seen.setdefault(hook.name, i)
