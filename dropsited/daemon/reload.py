"""SIGHUP: what a new manifest changes, decided without touching a process.

`plan` compares the running definitions with the new ones; the daemon carries the
changes out. Only what changed restarts: a new concurrency resizes in place
(supervisor #1154, circus #997), an unchanged agent keeps its processes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from pathlib import Path

from .context import log
from .manifest import AgentSpec, Manifest, ManifestError, load_manifest


class Change(enum.Enum):
    ADD = "adding"
    REMOVE = "removing"
    RESIZE = "resizing"
    RESTART = "restarting"  # the definition changed: retire the old group, start anew


def plan(running: Mapping[str, AgentSpec],
         wanted: Sequence[AgentSpec]) -> list[tuple[Change, str, AgentSpec | None]]:
    """The changes, removals first then in the new manifest's order; unchanged agents
    are not listed."""
    names = {spec.name for spec in wanted}
    changes: list[tuple[Change, str, AgentSpec | None]] = [
        (Change.REMOVE, name, None) for name in running if name not in names]
    for spec in wanted:
        old = running.get(spec.name)
        if old is None:
            changes.append((Change.ADD, spec.name, spec))
        elif old == spec:
            continue
        elif old.same_except_concurrency(spec):
            changes.append((Change.RESIZE, spec.name, spec))
        else:
            changes.append((Change.RESTART, spec.name, spec))
    return changes


def reread(current: Manifest, workspace_override: Path | None) -> Manifest | None:
    """The manifest read again, or None (logged) when it is refused: invalid, or naming
    another workspace, which cannot change while the daemon runs."""
    try:
        new = load_manifest(current.path, workspace_override=workspace_override)
    except ManifestError as exc:
        log.error("reload refused, keeping the running manifest:\n%s", exc)
        return None
    if new.workspace != current.workspace:
        log.error("reload refused: the workspace cannot change while running (%s -> %s)",
                  current.workspace, new.workspace)
        return None
    return new
