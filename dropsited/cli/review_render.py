"""What `dropsited review` shows and how it reads an answer: pure functions, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..protocol.task import Task
from .common import short_time, visible, visible_block

SCISSORS = "# ------------------------ >8 ------------------------"
EDITOR_HELP = "# Write your answer above the line. Everything below it is ignored."
RULE_WIDTH = 60

# What a typed answer means besides an option or free text.
SKIP, QUIT, EDIT = "s", "q", "e"


@dataclass
class Request:
    """A feedback request as an agent sent it: a bare string or {question, draft, options, ...}."""

    question: str
    draft: str | None = None
    options: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def parse_request(value: Any) -> Request:
    if isinstance(value, dict):
        options = value.get("options")
        draft = value.get("draft")
        return Request(
            question=str(value.get("question") or "(no question given)"),
            draft=None if draft is None else _text(draft),
            options=[str(o) for o in options] if isinstance(options, list) else [],
            extra={k: v for k, v in value.items() if k not in ("question", "draft", "options")},
        )
    if value is None:
        return Request("(no question given)")
    return Request(_text(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def rule(label: str) -> str:
    head = f"── {label} "
    return head + "─" * max(3, RULE_WIDTH - len(head))


def _indent(text: str, pad: str = "  ") -> list[str]:
    """Untrusted text of several lines, indented, its control characters made visible."""
    return [f"{pad}{line}".rstrip() for line in visible_block(text).splitlines()] or [pad.rstrip()]


def _header(task: Task, label: str) -> list[str]:
    return [rule(label), f"{visible(task.title)}  [{task.id}]",
            f"from {visible(task.created_by)} · updated {visible(short_time(task.updated_at))}"]


def render_feedback(task: Task, label: str) -> str:
    request = parse_request(task.context.get("_feedback_request"))
    lines = _header(task, label) + ["", "Question:", *_indent(request.question)]
    if request.draft is not None:
        lines += ["", "Draft:", *_indent(request.draft)]
    if request.extra:
        lines += ["", "Details:", *_indent(_text(request.extra))]
    lines += _options_block(request.options)
    return "\n".join(lines)


def render_human_task(task: Task, label: str) -> str:
    lines = _header(task, label)
    if task.description:
        lines += ["", *_indent(task.description)]
    context = {k: v for k, v in task.context.items() if not k.startswith("_")}
    if context:
        lines += ["", "Context:", *_indent(_text(context))]
    lines += _options_block(task_options(task))
    return "\n".join(lines)


def task_options(task: Task) -> list[str]:
    options = task.context.get("options")
    return [str(o) for o in options] if isinstance(options, list) else []


def render_blocked(task: Task, label: str) -> str:
    return "\n".join(_header(task, label) + ["", f"Blocked: {visible(block_reason(task))}"])


def block_reason(task: Task) -> str:
    for entry in reversed(task.history):
        if isinstance(entry, dict) and entry.get("status") == "blocked":
            return str(entry.get("reason") or "(no reason given)")
    return "(no reason given)"


def _options_block(options: list[str]) -> list[str]:
    if not options:
        return []
    return ["", "Options:", *(f"  {n}) {visible(o)}" for n, o in enumerate(options, 1))]


def answer_prompt(options: list[str]) -> str:
    pick = f"1-{len(options)} or an option, " if options else ""
    return f"Answer ({pick}free text; e = editor, s = skip, q = quit)"


def interpret(typed: str, options: list[str]) -> str:
    """An option's text for its number or its (case-insensitive) text, else the text as typed.

    SKIP, QUIT and EDIT come back as themselves; the caller checks them first.
    """
    text = typed.strip()
    if text.lower() in (SKIP, QUIT, EDIT):
        return text.lower()
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1]
    for option in options:
        if option.lower() == text.lower():
            return option
    return text


def editor_template(shown: str) -> str:
    """Text for $EDITOR: an empty answer area, then the task for reference below the scissors."""
    reference = "\n".join(f"# {line}".rstrip() for line in shown.splitlines())
    return f"\n\n{SCISSORS}\n{EDITOR_HELP}\n{reference}\n"


def editor_answer(edited: str | None) -> str:
    """The answer written above the scissors line, stripped; '' when there is none."""
    if edited is None:
        return ""
    return edited.split(SCISSORS, 1)[0].strip()
