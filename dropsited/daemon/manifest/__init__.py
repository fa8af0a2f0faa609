"""The agents manifest (`agents.yaml`): its schema, its defaults and its error messages.

- spec.py: what a manifest says once read (frozen dataclasses: AgentSpec, Manifest);
- yaml_nodes.py: reading YAML into nodes that keep line numbers, refusing bombs;
- values.py: the value parsers (durations, sizes, signals, `${VAR}`, paths, names);
- hook_values.py: the parsers of `on:` (event hooks: events, URLs, headers, filters);
- schema.py: the table of keys and parsers, defaults merging and two-key rules.

It imports the standard library, pyyaml and the protocol's name rule only, so
`dropsited check` and the daemon share it without pulling in click or psutil.
"""

from .schema import load_manifest, parse_manifest
from .spec import (
    INPUTS,
    MODES,
    RESTARTS,
    TASK_FILE,
    AgentSpec,
    Backoff,
    GiveUp,
    HookSpec,
    LogSpec,
    Manifest,
    ManifestError,
)
from .yaml_nodes import MAX_BYTES

__all__ = [
    "INPUTS",
    "MAX_BYTES",
    "MODES",
    "RESTARTS",
    "TASK_FILE",
    "AgentSpec",
    "Backoff",
    "GiveUp",
    "HookSpec",
    "LogSpec",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "parse_manifest",
]
