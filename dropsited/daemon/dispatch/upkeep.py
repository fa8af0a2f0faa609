"""Keeping the queue moving between claims: what the loop runs on its timers.

Tasks whose holder died go back to inbox/ (the reaper, which judges other hosts' claims
by their leases); outcomes the file system refused are written again; tasks this daemon
holds that no agent runs and no outcome waits for go back too; temp files left by
interrupted moves are finished or removed. Each logs what it did and never raises: a
full disk or a vanished mount must not stop the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Container

from ...protocol import DropSite, DropSiteError
from ...protocol.hosts import HostView
from ...protocol.store import TASK_FOLDERS
from ..agents.settle import retry_parked
from ..context import Context, log, log_limited


def reap(ctx: Context, running: set[str], hosts: HostView) -> None:
    """Requeue gone holders' tasks, write refused outcomes again, then requeue ours that
    no agent runs (`running` names those that one does) and no outcome waits for."""
    try:
        for task_id, reason in ctx.ds.reap(hosts=hosts):
            log.info("reaped %s (%s)", task_id, reason)
    except (DropSiteError, OSError) as exc:
        log_limited("reap", f"reaping failed: {exc}")
    # An outcome the file system refused (disk full, a mount gone) is written again
    # until it is stored or its claim turns out lost (late-results). A task this
    # daemon still holds that no agent runs and no outcome waits for goes back,
    # unused (the reaper never takes it: its holder, this daemon, is alive).
    record_parked(ctx)
    release_own_tasks(ctx.ds, "its outcome could not be recorded",
                      keep=running | set(ctx.parked))


def record_parked(ctx: Context) -> None:
    for task_id, settled in retry_parked(ctx):
        log.info("recorded the outcome of %s (%s/) once the workspace took writes again",
                 task_id, settled.value)


def release_own_tasks(ds: DropSite, reason: str, keep: Container[str] = ()) -> None:
    """Anything this daemon still holds (except `keep`) goes back to the inbox, unused."""
    try:
        for task_id, error in ds.release_held_by(os.getpid(), reason, keep):
            if error is None:
                log.info("requeued %s: %s", task_id, reason)
            else:
                log_limited("release", f"could not requeue {task_id}: {error}")
    except (DropSiteError, OSError) as exc:  # the workspace unreachable (a network mount)
        log_limited("release", f"could not requeue held tasks: {exc}")


def sweep_temp_files(ds: DropSite, full: bool) -> None:
    """Temp files older than a minute whose writer is gone: in inbox/, or everywhere."""
    folders = TASK_FOLDERS if full else ("inbox",)
    try:
        for line in ds.store.recover_temp_files(min_age=60.0, folders=folders):
            log.info("recovery: %s", line)
    except (DropSiteError, OSError) as exc:
        log_limited("temps", f"cannot sweep temp files: {exc}")


def at_shutdown(ctx: Context) -> None:
    """The daemon's last word on tasks: a last try at outcomes the file system refused,
    then every task this daemon still holds goes back to inbox/."""
    record_parked(ctx)
    release_own_tasks(ctx.ds, "daemon stopped")
