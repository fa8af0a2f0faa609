"""`dropsited schedules` (each schedule's next and last run) and `dropsited archive`
(finished tasks into archive/): issue 14's parts 2 and 3 at the terminal."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..protocol import DropSite, retention
from ..protocol.task import Task, utcnow_iso
from .common import (
    emit_json,
    fail,
    handle_errors,
    json_option,
    open_workspace,
    table,
    visible,
    workspace_command,
)
from .daemon_cmds import _load, _resolve_workspace


def register(group: click.Group) -> None:
    group.add_command(schedules)
    _archive(group)


def parse_age(text: str, option: str) -> float:
    """An age like '7d', '12h', '90m', '3600' (seconds), as the manifest's durations."""
    from ..daemon.manifest.values import _DURATION_RE, _DURATION_UNITS
    m = _DURATION_RE.match(text or "")
    if not m:
        fail(f"{option}: expected an age like 7d, 12h, 30m or seconds, got {text!r}")
    value = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    if value > 1e9:
        fail(f"{option}: {text!r} is more than 30 years")
    return value


def _archive(group: click.Group) -> None:
    @workspace_command(group, "archive")
    @click.option("--older-than", "older_than", required=True,
                  help="Finished longer ago than this: 7d, 12h, 30m, or seconds.")
    @click.option("--folder", type=click.Choice(retention.FINISHED), multiple=True,
                  help="Only this folder (repeatable; default done and failed).")
    @click.option("--dry-run", is_flag=True, help="List what would move; move nothing.")
    @click.option("--compress", is_flag=True,
                  help="One gzip'ed JSON-lines file per day instead of a file per task.")
    @click.option("--limit", type=click.IntRange(1), default=None, help="At most this many.")
    @json_option
    def archive(workspace: Path, older_than: str, folder: tuple, dry_run: bool, compress: bool,
                limit: int | None, as_json: bool) -> None:
        """Move finished tasks older than --older-than into WORKSPACE/archive/YYYY-MM-DD/.

        The day is the UTC date the task finished (its last history entry). Archived
        tasks stay one readable JSON file each (grep -r works), or with --compress one
        archive/YYYY-MM-DD.jsonl.gz per day (zcat, gzip -dc). `show ID` and
        `list archive` still find them. Unreadable files are skipped with a note.

        \b
        Example:
          dropsited archive ./workspace --older-than 7d --dry-run
          dropsited archive ./workspace --older-than 30d --folder failed --compress
        """
        age = parse_age(older_than, "--older-than")
        ds = open_workspace(workspace)
        ages = {f: age for f in (folder or retention.FINISHED)}
        report = retention.archive(ds.store, ages, dry_run=dry_run, compress=compress,
                                   limit=limit)
        if as_json:
            emit_json({"dry_run": dry_run, **report.to_dict()})
        else:
            verb = "would move" if dry_run else "moved"
            for task_id, src, day in report.moved:
                click.echo(f"{verb} {src}/{task_id}.json -> archive/{day}"
                           f"{retention.GZ_SUFFIX if compress else '/'}")
            for note in report.notes:
                click.echo(f"note: {note}", err=True)
            click.echo(f"{len(report.moved)} {verb}, {report.kept} newer kept")


def archived_list(ds: DropSite, agent: str | None, tags: list[str]) -> list[Task]:
    """Every archived task (oldest day first), filtered as `list` filters a folder."""
    notes: list[str] = []
    tasks = [t for _, t in retention.archived_tasks(ds.store, notes)
             if (agent is None or t.assigned_to == agent) and
             (not tags or set(tags) & set(t.tags))]
    for note in notes:
        click.echo(f"note: {visible(note)}", err=True)
    return tasks


@click.command()
@click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-c", "--config", type=click.Path(path_type=Path), default=None,
              help="The manifest whose schedules to list (default: what the daemon recorded).")
@click.option("-w", "--workspace", "workspace_opt", default=None,
              type=click.Path(file_okay=False, path_type=Path), help="Same as WORKSPACE.")
@json_option
@handle_errors
def schedules(workspace: Path | None, config: Path | None, workspace_opt: Path | None,
              as_json: bool) -> None:
    """List the schedules with their next and last run and the last task's folder.

    Without -c, the schedules the daemon last recorded in .dropsited/schedules.json;
    with -c, the manifest's (next runs computed from it).

    \b
    Example:
      dropsited schedules ./workspace
      dropsited schedules -c agents.yaml --json
    """
    from ..daemon.schedules import state
    from ..daemon.schedules.runner import when_of
    from ..daemon.schedules.slots import next_slot

    ws = _resolve_workspace(workspace or workspace_opt, config)
    ds = open_workspace(ws)
    entries, problem = state.load(ds.store)
    if problem:
        click.echo(f"note: {problem}", err=True)
    rows = []
    if config is not None:
        manifest = _load(config, workspace or workspace_opt)
        now = time.time()
        for spec in manifest.schedules:
            entry = entries.get(spec.name, state.Entry())
            rows.append({"name": spec.name, **entry.to_json(), "describe": spec.describe(),
                         "next_slot": next_slot(when_of(spec), now),
                         "next_at": utcnow_iso(next_slot(when_of(spec), now))})
    else:
        rows = [{"name": n, **e.to_json()} for n, e in sorted(entries.items())]
    for row in rows:
        found = ds.store.locate(row["task_id"]) if row.get("task_id") else None
        if found is None and row.get("task_id"):
            found_archived = retention.find_archived(ds.store, row["task_id"])
            row["task_folder"] = "archive" if found_archived else None
        else:
            row["task_folder"] = found.folder if found else None
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo("(no schedules)")
    else:
        click.echo(table(([r["name"], r.get("describe") or "-", _at(r.get("next_at")),
                           _at(r.get("task_slot_at")), r.get("task_id") or "-",
                           r.get("task_folder") or "-", r.get("action") or "-"] for r in rows),
                         ("name", "when", "next", "last run", "last task", "in", "last")))


def _at(iso: str | None) -> str:
    return "-" if not iso else iso.replace("+00:00", "Z")
