"""`dropsited top`: a live view of a workspace, redrawn in place until q or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import click

from ..protocol import DropSite
from . import top_frame
from .common import emit_json, fail, open_workspace, workspace_command

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
QUIT_KEYS = ("q", "Q")


def register(group: click.Group) -> None:
    @workspace_command(group, "top")
    @click.option("--interval", "-n", type=click.FloatRange(min=0.1), default=2.0,
                  show_default=True, metavar="SECONDS", help="Seconds between redraws.")
    @click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and tests).")
    @click.option("--json", "as_json", is_flag=True, help="With --once: print the frame as JSON.")
    def top(workspace: Path, interval: float, once: bool, as_json: bool) -> None:
        """Live view: queue depths, agents with state and current task, throughput.

        Redrawn in place every --interval seconds; press q (or Ctrl-C) to leave.
        Throughput counts the tasks that reached done/ and failed/ in the last minute.

        \b
        Example:
          dropsited top ./workspace
          dropsited top ./workspace --once --json | jq .queues
        """
        if as_json and not once:
            fail("--json needs --once (a live view cannot be JSON)")
        ds = open_workspace(workspace)
        if once:
            frame = top_frame.snapshot(ds)
            emit_json(frame) if as_json else click.echo(top_frame.render(frame))
            return
        _live(ds, interval)


def _live(ds: DropSite, interval: float) -> None:
    out = sys.stdout
    with _keys() as pressed:
        out.write(HIDE_CURSOR)
        try:
            while True:
                frame = top_frame.render(top_frame.snapshot(ds), top_frame.terminal_width())
                out.write(CLEAR + frame + "\n\n(q to quit)")
                out.flush()
                if pressed(interval) in QUIT_KEYS:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            out.write(SHOW_CURSOR + "\n")
            out.flush()


@contextlib.contextmanager
def _keys() -> Iterator:
    """A function waiting up to N seconds for a key; the terminal in cbreak mode meanwhile.

    Ctrl-C still raises KeyboardInterrupt (cbreak keeps signals). Without a
    terminal on stdin it just sleeps.
    """
    stdin = sys.stdin
    if not stdin.isatty():
        def sleep(seconds: float) -> str:
            time.sleep(seconds)
            return ""
        yield sleep
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def wait(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 32).decode("utf-8", "replace")[:1] if ready else ""

    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
