"""`dropsited review`: a human walks through what waits for them, one task at a time.

Three queues, in this order: feedback/ (an agent asked a question), inbox/
tasks assigned to the human agent (claim, answer, complete), and blocked/
(unblock with a note). Each answer goes back through the DropSite API, so
`dropsited feedback WORKSPACE ID "answer"` and this command are interchangeable.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ..protocol import DropSite, DropSiteError, Task
from ..protocol.names import check_agent_name
from . import review_render as render
from .common import open_workspace, visible, workspace_command

EXIT_INTERRUPTED = 130


class _Quit(Exception):
    """The human typed q: stop walking, keep what was answered."""


class Review:
    """One review session over a workspace; counts what the human did."""

    def __init__(self, ds: DropSite, agent: str) -> None:
        self.ds = ds
        self.agent = agent
        self.answered = 0
        self.skipped = 0
        self.held: Task | None = None  # an inbox task claimed and not yet answered

    def waiting(self) -> dict[str, list[Task]]:
        return {
            "feedback": self.ds.list_tasks("feedback"),
            "inbox": [t for t in self.ds.list_tasks("inbox")
                      if t.assigned_to == self.agent and self._ready(t)],
            "blocked": self.ds.list_tasks("blocked"),
        }

    def _ready(self, task: Task) -> bool:
        """Due now (no later not-before time) and every dependency in done/."""
        if task.not_before is not None and task.not_before > time.time():
            return False
        return all((found := self.ds.locate(dep)) is not None and found.folder == "done"
                   for dep in task.depends_on)

    def run(self, queues: dict[str, list[Task]]) -> None:
        total = sum(len(q) for q in queues.values())
        step = 0
        for kind, tasks in queues.items():
            for task in tasks:
                step += 1
                label = f"{kind} · {step}/{total}"
                getattr(self, f"_{kind}")(task, label)

    # -- the three kinds ------------------------------------------------------
    def _feedback(self, task: Task, label: str) -> None:
        shown = render.render_feedback(task, label)
        click.echo(shown)
        request = render.parse_request(task.context.get("_feedback_request"))
        answer = self._ask(shown, request.options)
        if answer is None:
            return
        try:
            self.ds.respond_feedback(task.id, answer)
        except DropSiteError as exc:  # answered meanwhile by someone else
            self._note(f"not sent: {exc}")
            return
        self.answered += 1
        self._note(f"sent: {answer!r} -> {task.id} is back in inbox/")

    def _inbox(self, task: Task, label: str) -> None:
        claimed = self.ds.claim(self.agent, task.id)
        if claimed is None:
            self._note(f"skipped {task.id}: taken by someone else")
            return
        self.held = claimed
        shown = render.render_human_task(claimed, label)
        click.echo(shown)
        answer = self._ask(shown, render.task_options(claimed))
        if answer is None:
            self.release("skipped in review")
            return
        self.ds.complete(claimed, {"answer": answer})
        self.held = None
        self.answered += 1
        self._note(f"done: {task.id} completed with answer {answer!r}")

    def _blocked(self, task: Task, label: str) -> None:
        click.echo(render.render_blocked(task, label))
        choice = click.prompt("Unblock it? (u = unblock, s = skip, q = quit)",
                              type=click.Choice(["u", "s", "q"]), show_choices=False)
        if choice == render.QUIT:
            raise _Quit()
        if choice == render.SKIP:
            self.skipped += 1
            return
        note = click.prompt("Note for the history (optional)", default="", show_default=False)
        try:
            self.ds.unblock(task.id, note.strip() or None)
        except DropSiteError as exc:
            self._note(f"not unblocked: {exc}")
            return
        self.answered += 1
        self._note(f"unblocked: {task.id} is back in inbox/")

    # -- reading an answer ----------------------------------------------------
    def _ask(self, shown: str, options: list[str]) -> str | None:
        """The answer text, or None for skip; raises _Quit for q."""
        while True:
            typed = click.prompt(render.answer_prompt(options))
            answer = render.interpret(typed, options)
            if options and answer.isdigit():
                self._note(f"there is no option {answer} (1-{len(options)}); nothing sent")
                continue
            if answer == render.QUIT:
                raise _Quit()
            if answer == render.SKIP:
                self.skipped += 1
                return None
            if answer == render.EDIT:
                answer = render.editor_answer(click.edit(render.editor_template(shown),
                                                         extension=".md"))
                if not answer:
                    self._note("empty answer (or editor closed without saving); nothing sent")
                    continue
            return answer

    def release(self, reason: str) -> None:
        """Give back an inbox task claimed for the human but not answered."""
        if self.held is not None:
            self.ds.release(self.held, reason)
            self.held = None

    @staticmethod
    def _note(line: str) -> None:
        click.echo(f"  → {visible(line)}\n")

    def summary(self) -> str:
        return f"Reviewed: {self.answered} answered, {self.skipped} skipped."


def register(group: click.Group) -> None:
    @workspace_command(group, "review")
    @click.option("--agent", default=lambda: os.environ.get("DROPSITE_AGENT") or "human",
                  show_default="$DROPSITE_AGENT or human",
                  help="Review inbox/ tasks assigned to this agent name.")
    def review(workspace: Path, agent: str) -> None:
        """Answer what waits for a human: feedback/, the human's inbox/ tasks, blocked/.

        For each task it shows the title, the question, the draft and the
        options. Type an option's number or text, any other text as a free
        answer, e to write a longer answer in $EDITOR, s to skip, q to quit.

        \b
        Example:
          dropsited review ./workspace
          EDITOR=nano dropsited review ./workspace --agent alice
        """
        ds = open_workspace(workspace)
        session = Review(ds, check_agent_name(agent))
        queues = session.waiting()
        if not any(queues.values()):
            click.echo(f"Nothing waiting for review in {workspace} "
                       f"(feedback/, inbox/ for {agent!r}, blocked/ are empty).")
            return
        try:
            session.run(queues)
        except _Quit:
            session.release("left in review")
            click.echo(session.summary())
            return
        except (click.Abort, KeyboardInterrupt):  # Ctrl-C or end of input
            session.release("review interrupted")
            if not sys.stdin.isatty():  # piped answers ran out: a normal end, like q
                click.echo(f"\nEnd of input. {session.summary()}")
                return
            click.echo(f"\nInterrupted. {session.summary()}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        click.echo(session.summary())
