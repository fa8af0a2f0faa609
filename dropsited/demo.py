"""`dropsited up --demo`: a few tasks for agents.example.yaml, and where to look."""

from __future__ import annotations

import sys
import threading

from .protocol import TaskBuilder

LOOK = """
  Demo tasks dropped into {ws}/inbox. Look around:
    ls {ws}/*/                              # where every task is
    cat {ws}/done/*.json                    # results and full history
    dropsited status {ws}                   # agents, pids, queue depths
    dropsited list {ws} feedback            # what waits for a human
    dropsited review {ws}                   # answer it interactively, or:
    dropsited feedback {ws} <task-id> "approve"
  Ctrl-C drains and stops.
"""


def demo_tasks() -> list:
    return [
        TaskBuilder("Count the words of a sentence", "demo").tag("shell")
        .context({"text": "the dead drop for your AI agents"}).build(),
        TaskBuilder("Shout a greeting", "demo").tag("node")
        .context({"text": "hello from a node worker"}).build(),
        TaskBuilder("Summarise a draft", "demo").tag("python")
        .context({"text": "Folders of JSON files are a fine queue for agents."}).build(),
        TaskBuilder("Publish a summary", "demo").tag("python")
        .context({"text": "Humans answer from the terminal. Agents wait.",
                  "needs_approval": True}).build(),
        TaskBuilder("Approve a trade", "demo").assign("human").tag("approval")
        .context({"action": "buy", "ticker": "NVDA", "size": 100}).build(),
    ]


def schedule_demo(daemon) -> None:
    """Drop the demo tasks shortly after start, from a thread, like any other client."""

    def drop() -> None:
        for task in demo_tasks():
            daemon.ds.submit(task)
        print(LOOK.format(ws=daemon.ds.workspace), file=sys.stderr, flush=True)

    timer = threading.Timer(1.0, drop)
    timer.daemon = True
    timer.start()
