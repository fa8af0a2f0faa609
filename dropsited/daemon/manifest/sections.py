"""The manifest's `schedules:` and `retention:` sections, and the values only they use.

The keys and their parsers are schema.py's table (SCHEDULE_FIELDS, TASK_FIELDS,
RETENTION_FIELDS); this module walks the two sections with them and builds the spec
dataclasses, reporting every problem with its line as the rest of the manifest does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ...protocol.errors import DropSiteError
from ...protocol.task import Task
from ..schedules.slots import CATCH_UP, SHORTHANDS, cron_problem, zone_problem
from .spec import RetentionSpec, ScheduleSpec, TaskTemplate
from .values import Value, choice, sub_mapping
from .yaml_nodes import (
    BAD,
    NULL_TAG,
    ParseContext,
    check_keys,
    describe,
    join_path,
    pairs_of,
    plain_data,
    scalar_text,
    scalar_value,
)

MAX_SCHEDULES = 1000


def _parse_cron(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    text = scalar_text(ctx, node, path, "a cron expression like '0 6 * * *' or '@daily'")
    if text is BAD:
        return BAD
    problem = cron_problem(text)
    if problem:
        ctx.error(node, path, f"{problem}, got {describe(node)}")
        return BAD
    return " ".join(text.split())


parse_cron = Value(_parse_cron, {"type": "string", "examples": ["0 6 * * 1-5", *SHORTHANDS]})


def _parse_zone(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    text = scalar_text(ctx, node, path, "an IANA time zone like Europe/Berlin")
    if text is BAD:
        return BAD
    problem = zone_problem(text.strip())
    if problem:
        ctx.error(node, path, problem)
        return BAD
    return text.strip()


parse_zone = Value(_parse_zone, {"type": "string", "examples": ["UTC", "Europe/Berlin"]})


def _parse_bool(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    value = scalar_value(ctx, node, path, "true or false")
    if value is not BAD and not isinstance(value, bool):
        ctx.error(node, path, f"expected true or false, got {describe(node)}")
        return BAD
    return value


parse_bool = Value(_parse_bool, {"type": "boolean"})


def _parse_context(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    """A mapping that becomes the task's context: JSON data a task file may hold."""
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping (the task's context), got {describe(node)}")
        return BAD
    data = plain_data(ctx, node)
    try:
        Task.from_dict({"id": "x", "title": "x", "created_by": "x", "context": data})
    except (DropSiteError, ValueError, TypeError) as exc:
        ctx.error(node, path, f"not a context a task file may hold: {exc}")
        return BAD
    return data


parse_context = Value(_parse_context, {"type": "object"})


def _parse_title(ctx: ParseContext, node: yaml.Node, path: str) -> Any:
    text = scalar_text(ctx, node, path, "a title")
    if text is not BAD and not text.strip():
        ctx.error(node, path, "empty title")
        return BAD
    return text


parse_title = Value(_parse_title, {"type": ["string", "number"], "minLength": 1})


# --- schedules ---------------------------------------------------------------------------


def parse_schedules(ctx: ParseContext, node: yaml.Node | None,
                    fields: Mapping[str, Value]) -> tuple[ScheduleSpec, ...]:
    """`schedules:` as a mapping (name: entry) or a list of entries with `name:`."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG):
        return ()
    if isinstance(node, yaml.MappingNode):
        items = [(key, join_path("schedules", key), vnode, knode)
                 for key, knode, vnode in pairs_of(ctx, node, "schedules")]
    elif isinstance(node, yaml.SequenceNode):
        items = [(None, f"schedules[{i}]", item, None) for i, item in enumerate(node.value)]
    else:
        ctx.error(node, "schedules", f"expected a mapping of schedules by name (or a list), "
                  f"got {describe(node)}")
        return ()
    if len(items) > MAX_SCHEDULES:
        ctx.error(node, "schedules", f"{len(items)} schedules, at most {MAX_SCHEDULES}")
        return ()
    out: list[ScheduleSpec] = []
    seen: dict[str, int] = {}
    for key, path, vnode, knode in items:
        spec = _parse_schedule(ctx, key, knode, vnode, path, fields)
        if spec is None:
            continue
        line = vnode.start_mark.line + 1
        if spec.name in seen:
            ctx.error(vnode, path, f"duplicate schedule name {spec.name!r} "
                      f"(lines {seen[spec.name]} and {line})")
            continue
        seen[spec.name] = line
        out.append(spec)
    return tuple(out)


def _parse_schedule(ctx: ParseContext, key: str | None, knode: yaml.Node | None,
                    node: yaml.Node, path: str, fields: Mapping[str, Value]) -> ScheduleSpec | None:
    if not isinstance(node, yaml.MappingNode):
        ctx.error(node, path, f"expected a mapping with 'cron' or 'every' and 'task', "
                  f"got {describe(node)}")
        return None
    pairs = pairs_of(ctx, node, path)
    check_keys(ctx, pairs, tuple(fields), path)
    got = {k: fields[k](ctx, v, join_path(path, k)) for k, _, v in pairs if k in fields}
    if key is not None and "name" not in got:
        got["name"] = fields["name"](ctx, knode, path)  # the key is the name
    before = len(ctx.errors)
    if "name" not in got:
        ctx.error(node, path, "missing required key 'name'")
    if ("cron" in got) == ("every" in got):
        ctx.error(node, path, "set exactly one of 'cron' (an expression) and 'every' (a duration)")
    if "task" not in got:
        ctx.error(node, path, "missing required key 'task' (at least its title)")
    elif got["task"] is not BAD and "title" not in got["task"]:
        ctx.error(node, join_path(path, "task"), "missing required key 'title'")
    if len(ctx.errors) > before or BAD in got.values():
        return None
    task = got.pop("task")
    if "from" in task:
        task["created_by"] = task.pop("from")
    if "tags" in task:
        task["tags"] = tuple(task["tags"] or ())
    return ScheduleSpec(task=TaskTemplate(**task), **got)


def schedule_fields(task_fields: dict[str, Value], name: Value, every: Value) -> dict[str, Value]:
    """The per-schedule keys (schema.py keeps the table; this builds the entries that
    need this module's parsers)."""
    return {
        "name": name.doc("Like an agent name; in the mapping form the key is the name."),
        "cron": parse_cron.doc("5 fields (minute hour day-of-month month day-of-week) or "
                               "@hourly, @daily, @midnight, @weekly, @monthly, @yearly."),
        "every": every.doc("Instead of cron: a duration ('10m', '1h', '30s'); slots are "
                           "multiples of it since the epoch."),
        "tz": parse_zone.doc("IANA time zone of the cron expression (default UTC)."),
        "catch_up": choice(CATCH_UP).doc(
            "After downtime: one (default) drops once for the missed slots, none skips "
            "to the next slot."),
        "skip_if_running": parse_bool.doc(
            "No drop while the previous run is not in done/ or failed/ (default false)."),
        "task": sub_mapping(task_fields).doc("The task to drop; title is required."),
    }


# --- retention ---------------------------------------------------------------------------


def parse_retention(ctx: ParseContext, node: yaml.Node | None,
                    fields: dict[str, Value]) -> RetentionSpec | None:
    """`retention:` (a mapping; null or absent: the daemon archives nothing)."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG):
        return None
    got = sub_mapping(fields)(ctx, node, "retention")
    if got is BAD:
        return None
    if got.get("done") is None and got.get("failed") is None:
        ctx.error(node, "retention", "set 'done' or 'failed' (an age like 7d), or remove "
                  "'retention'")
        return None
    return RetentionSpec(**got)


__all__ = ["parse_bool", "parse_context", "parse_cron", "parse_retention",
           "parse_schedules", "parse_title", "parse_zone", "schedule_fields"]
