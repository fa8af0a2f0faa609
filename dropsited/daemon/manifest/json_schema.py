"""The manifest as a JSON Schema (draft-07), rendered from the schema table.

`dropsited check --schema` prints it; docs/agents.schema.json is this output, and a
`# yaml-language-server: $schema=...` line in agents.yaml lets editors validate and
complete a manifest with it. The YAML-only conveniences (anchors, aliases, `<<`
merges) are resolved by editors before they validate. What one key's value may be
comes from its parser (values.Value), so the two cannot disagree; the rules that
involve two keys (input: argv needs mode: exec, ...) stay `dropsited check`'s.
"""

from __future__ import annotations

from typing import Any

from .schema import AGENT_FIELDS, HOOKS, REQUIRED, RETENTION_FIELDS, SCHEDULE_FIELDS, TOP_KEYS
from .values import parse_path

DRAFT = "http://json-schema.org/draft-07/schema#"


def manifest_json_schema() -> dict[str, Any]:
    properties = {key: dict(value.schema) for key, value in AGENT_FIELDS.items()}
    agent = {"type": "object", "required": list(REQUIRED), "properties": properties,
             "additionalProperties": False}
    defaults = {"type": ["object", "null"], "additionalProperties": False,
                "properties": {k: v for k, v in properties.items() if k not in REQUIRED},
                "description": TOP_KEYS["defaults"]}
    return {
        "$schema": DRAFT,
        "title": "dropsited agents manifest (agents.yaml)",
        "description": "Every key is described in docs/MANIFEST.md; `dropsited check -c FILE` "
                       "reports every problem with its line.",
        "type": "object",
        "required": ["agents"],
        "additionalProperties": False,
        "properties": {
            "workspace": {**parse_path.schema, "description": TOP_KEYS["workspace"]},
            "defaults": defaults,
            "agents": {"type": "array", "minItems": 1, "items": agent,
                       "description": TOP_KEYS["agents"]},
            "schedules": _schedules(),
            "retention": {"anyOf": [_object(RETENTION_FIELDS, []), {"type": "null"}],
                          "description": TOP_KEYS["retention"]},
            "on": {**HOOKS.schema, "description": TOP_KEYS["on"]},
        },
    }


def _object(fields: dict, required: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": {k: dict(v.schema) for k, v in fields.items()}}


def _schedules() -> dict[str, Any]:
    """By name (the key is the name) or as a list of entries with `name:`."""
    keyed = _object({k: v for k, v in SCHEDULE_FIELDS.items()}, ["task"])
    listed = _object(SCHEDULE_FIELDS, ["name", "task"])
    return {"anyOf": [{"type": "object", "additionalProperties": keyed},
                      {"type": "array", "items": listed}, {"type": "null"}],
            "description": TOP_KEYS["schedules"]}
