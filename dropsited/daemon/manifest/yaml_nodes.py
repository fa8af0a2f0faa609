"""Reading YAML into nodes that keep their line numbers, and the helpers every value
parser shares.

The YAML is composed into nodes (never constructed as a whole) and walked by hand: that
is what keeps a line number on every error, catches duplicate keys (which PyYAML
silently overwrites) and lets us refuse alias bombs before anything is expanded. Errors
are collected in a `ParseContext`, so a user fixes a manifest in one pass.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024  # a manifest is a few kB; anything bigger is a mistake or an attack
MAX_NODES = 10_000  # counted with aliases expanded, so "billion laughs" stops here
MAX_ERRORS = 100
_SIMPLE_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z")

_TAG = "tag:yaml.org,2002:"
NULL_TAG, BOOL_TAG, INT_TAG, FLOAT_TAG, STR_TAG = (
    _TAG + t for t in ("null", "bool", "int", "float", "str"))
MERGE_TAG = _TAG + "merge"


class ParseContext:
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


def compose(ctx: ParseContext, text: str | bytes) -> yaml.Node | None:
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


def join_path(path: str, key: str) -> str:
    """Key path `agents[0].env.HOME`; odd keys are quoted so an error stays one line."""
    part = f".{key}" if _SIMPLE_KEY_RE.match(key) else f"[{short(key)}]"
    return part[1:] if not path and part.startswith(".") else path + part


def short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def describe(node: yaml.Node) -> str:
    """How a value is shown after "got": quoted strings, bare numbers, kinds of collections."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if node.tag == NULL_TAG:
        return "null"
    text = short(node.value)
    return text[1:-1] if node.tag in (BOOL_TAG, INT_TAG, FLOAT_TAG) else text


def pairs_of(ctx: ParseContext, node: yaml.MappingNode, path: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) in order, with `<<` merges applied and duplicates reported."""
    explicit: dict[str, yaml.Node] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    merged: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if knode.tag == MERGE_TAG:
            merged.extend(_merge_sources(ctx, vnode, path))
            continue
        if not isinstance(knode, yaml.ScalarNode):
            ctx.error(knode, path, f"keys must be plain strings, got {describe(knode)}")
            continue
        key = knode.value
        if key in explicit:
            ctx.error(
                knode, join_path(path, key), f"duplicate key (first at {_where(explicit[key], knode)})"
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
    ctx: ParseContext, vnode: yaml.Node, path: str
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """The pairs a `<<: *anchor` (or `<<: [*a, *b]`) brings in, earlier sources first."""
    sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
    out = []
    for src in sources:
        if not isinstance(src, yaml.MappingNode):
            ctx.error(
                src, path, f"'<<' expects a mapping or a list of mappings, got {describe(src)}"
            )
            continue
        out.extend(pairs_of(ctx, src, path))
    return out


def check_keys(
    ctx: ParseContext, pairs: list[tuple[str, yaml.Node, yaml.Node]], known: tuple[str, ...], path: str
) -> None:
    for key, knode, _ in pairs:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(knode, join_path(path, key), f"unknown key{more}")


class _Bad:
    """Sentinel for "this value had an error, already reported"."""


BAD: Any = _Bad()


def scalar_value(ctx: ParseContext, node: yaml.Node, path: str, what: str) -> Any:
    """The Python value of a scalar node (int, float, bool, str...), or BAD."""
    if not isinstance(node, yaml.ScalarNode):
        ctx.error(node, path, f"expected {what}, got {describe(node)}")
        return BAD
    try:
        return ctx.constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        ctx.error(node, path, f"expected {what}, got {describe(node)} (tag {node.tag!r})")
        return BAD


def scalar_text(ctx: ParseContext, node: yaml.Node, path: str, what: str = "a string") -> Any:
    """Any non-null scalar as the text the user wrote (so `PORT: 8080` gives '8080')."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == NULL_TAG:
        ctx.error(node, path, f"expected {what}, got {describe(node)}")
        return BAD
    # A resolved or explicit tag (`8080`, `!!int x`): the text must really be of that type.
    if node.tag != STR_TAG and scalar_value(ctx, node, path, what) is BAD:
        return BAD
    if "\x00" in node.value:
        ctx.error(node, path, "contains a NUL character")
        return BAD
    return node.value


def plain_data(ctx: ParseContext, node: yaml.Node) -> Any:
    """Node tree to plain JSON-friendly data (for `defaults_raw`); nodes are already counted."""
    if isinstance(node, yaml.MappingNode):
        return {
            str(k.value): plain_data(ctx, v)
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode)
        }
    if isinstance(node, yaml.SequenceNode):
        return [plain_data(ctx, v) for v in node.value]
    try:
        value = ctx.constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        return node.value
    return value if isinstance(value, (str, int, float, bool, type(None))) else node.value
