"""drafter (exec agent): drafts an email, asks a human, and acts on the answer.

The daemon runs it once per pass of the task, with the task JSON on stdin:

- first pass: no answer yet -> write a draft and ask for feedback (the task
  waits in feedback/ until a human answers);
- next pass: context["_feedback_response"] holds the answer:
  approve -> "send" the email (write it to <output_dir>/<recipient>.txt);
  reject  -> finish without sending;
  revise, or any other text -> a new draft that takes the note into account,
  and ask again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OPTIONS = ["approve", "revise", "reject"]


def compose(recipient: str, version: int, note: str | None) -> str:
    if version == 1:
        return (f"Dear {recipient},\n\nWelcome to the team! Your desk, laptop and badge are "
                "ready, and lunch on Monday is on us.\n\nBest regards,\nThe DropSite crew")
    return (f"Hi {recipient},\n\nWelcome aboard! See you on Monday.\n\n"
            f"The DropSite crew\n\n[version {version}, revised after: {note}]")


def ask(recipient: str, version: int, note: str | None = None) -> dict:
    """The exec contract's reply that moves the task to feedback/ with this question."""
    return {"_dropsite": {"status": "feedback", "question": {
        "question": f"Send this welcome email to {recipient}?",
        "draft": compose(recipient, version, note),
        "options": OPTIONS,
        "version": version,
    }}}


def handle(task: dict) -> dict:
    context = task["context"]
    recipient = context["recipient"]
    answer = context.get("_feedback_response")
    if answer is None:
        return ask(recipient, 1)
    request = context.get("_feedback_request") or {}
    version = int(request.get("version", 1))
    verdict = str(answer).strip().lower()
    if verdict.startswith("approve"):
        out = Path(context["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        sent = out / f"{recipient}.txt"
        sent.write_text(request["draft"] + "\n")
        return {"status": "sent", "file": str(sent), "version": version}
    if verdict.startswith("reject"):
        return {"status": "rejected", "version": version}
    note = str(answer).strip()
    if note.lower().startswith("revise"):
        note = note[len("revise"):].lstrip(" :,-") or "make it shorter"
    return ask(recipient, version + 1, note)


if __name__ == "__main__":
    print(json.dumps(handle(json.load(sys.stdin))))
