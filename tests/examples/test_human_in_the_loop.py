"""examples/human-in-the-loop: the drafter asks, a human answers with `dropsited feedback`,
the drafter revises, sends or drops the email accordingly."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXAMPLES

from dropsited import DropSite

EXAMPLE = EXAMPLES / "human-in-the-loop"


def _waiting_question(ds: DropSite, task_id: str, version: int) -> dict | None:
    """The feedback request of `task_id` once it waits in feedback/ at this draft version."""
    found = ds.locate(task_id)
    if found is None or found.folder != "feedback":
        return None
    request = ds.get_task(task_id).context.get("_feedback_request")
    return request if request and request.get("version") == version else None


def test_draft_revise_approve_and_reject(tmp_path: Path, daemon, wait_until, dropsited) -> None:
    ws, out = tmp_path / "ws", tmp_path / "outbox"
    running = daemon(EXAMPLE / "agents.yaml", ws)
    ds = DropSite(ws)

    def drop(recipient: str) -> str:
        payload = json.dumps({"recipient": recipient, "output_dir": str(out)})
        return dropsited("drop", ws, "--from", "hr", "--type", "email", "-q", "--payload",
                         payload, "--title", f"Welcome email for {recipient}").strip()

    ada, bob = drop("Ada"), drop("Bob")
    first = wait_until(lambda: _waiting_question(ds, ada, 1), 15, "Ada's first draft",
                       daemon=running)
    assert first["question"] == "Send this welcome email to Ada?"
    assert first["options"] == ["approve", "revise", "reject"]
    assert first["draft"].startswith("Dear Ada,")

    dropsited("feedback", ws, ada, "revise: shorter, please")
    second = wait_until(lambda: _waiting_question(ds, ada, 2), 15, "Ada's second draft",
                        daemon=running)
    assert second["draft"].startswith("Hi Ada,\n\nWelcome aboard!")
    assert "revised after: shorter, please" in second["draft"]
    assert ds.get_task(ada).context["_feedback_response"] == "revise: shorter, please"

    dropsited("feedback", ws, ada, "approve")
    wait_until(lambda: _folder(ds, ada) == "done", 15, "Ada's email to be sent", daemon=running)

    wait_until(lambda: _waiting_question(ds, bob, 1), 15, "Bob's draft", daemon=running)
    dropsited("feedback", ws, bob, "reject")
    wait_until(lambda: _folder(ds, bob) == "done", 15, "Bob's task to finish", daemon=running)
    assert running.stop() == 0

    assert ds.get_task(ada).result == {"status": "sent", "file": str(out / "Ada.txt"),
                                       "version": 2}
    assert (out / "Ada.txt").read_text() == second["draft"] + "\n"
    assert ds.get_task(bob).result == {"status": "rejected", "version": 1}
    assert not (out / "Bob.txt").exists()
    statuses = [e["status"] for e in ds.get_task(ada).history]
    assert statuses.count("feedback") == 2 and statuses[-1] == "done"


def _folder(ds, task_id: str) -> str | None:
    """The task's folder; None for the instant a move is in flight (only a temp file)."""
    found = ds.locate(task_id)
    return found.folder if found else None
