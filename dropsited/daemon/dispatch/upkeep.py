"""Keeping the queue moving between claims: what the loop runs on its timers.

Tasks whose holder died go back to inbox/ (the reaper); tasks this daemon holds but no
agent runs go back too (their outcome could not be written: a full disk); temp files
left by interrupted moves are finished or removed. Each logs what it did and never
raises: a full disk or a vanished folder must not stop the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Container

from ...protocol import DropSite, DropSiteError
from ...protocol.store import TASK_FOLDERS
from ..context import log, log_limited


def reap(ds: DropSite, running: Container[str]) -> None:
    """Requeue dead holders' tasks, then ours that no agent runs (`running` names those
    that one does)."""
    try:
        for task_id, reason in ds.reap():
            log.info("reaped %s (%s)", task_id, reason)
    except (DropSiteError, OSError) as exc:
        log.error("reaping failed: %s", exc)
    # A task this daemon holds but no agent runs is one whose outcome could not be
    # written (disk full): the reaper never takes it (its holder is alive), so
    # requeue it here, unused, once the disk takes writes again.
    release_own_tasks(ds, "its outcome could not be recorded", keep=running)


def release_own_tasks(ds: DropSite, reason: str, keep: Container[str] = ()) -> None:
    """Anything this daemon still holds (except `keep`) goes back to the inbox, unused."""
    for task_id, error in ds.release_held_by(os.getpid(), reason, keep):
        if error is None:
            log.info("requeued %s: %s", task_id, reason)
        else:
            log_limited("release", f"could not requeue {task_id}: {error}")


def sweep_temp_files(ds: DropSite, full: bool) -> None:
    """Temp files older than a minute whose writer is gone: in inbox/, or everywhere."""
    folders = TASK_FOLDERS if full else ("inbox",)
    try:
        for line in ds.store.recover_temp_files(min_age=60.0, folders=folders):
            log.info("recovery: %s", line)
    except (DropSiteError, OSError) as exc:
        log_limited("temps", f"cannot sweep temp files: {exc}")
