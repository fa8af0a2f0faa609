"""`dropsited review`, driven as a human would: the real command in a pseudo-terminal,
answers typed as keystrokes, $EDITOR a small script that writes the longer answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pty_terminal import Terminal

from dropsited import DropSite, TaskBuilder
from dropsited.cli import main

DROPSITED = Path(sys.executable).parent / "dropsited"


@pytest.fixture
def terminal(tmp_path: Path):
    opened: list[Terminal] = []

    def start(*args: str, **env: str) -> Terminal:
        base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TERM": "dumb",
                "LANG": "C.UTF-8", "EDITOR": "false"}
        term = Terminal([str(DROPSITED), *args], {**base, **env})
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


@pytest.fixture
def ds(tmp_path: Path) -> DropSite:
    return DropSite(tmp_path / "ws", durable=False)


def _ask(ds: DropSite, title: str, question: object, priority: int = 5) -> str:
    tid = ds.submit(TaskBuilder(title, "drafter").priority(priority).build())
    task = ds.claim("drafter", tid)
    ds.request_feedback(task, question)
    return tid


def _editor(tmp_path: Path, answer: str) -> str:
    """An $EDITOR that writes `answer` above the scissors line, as a human would."""
    script = tmp_path / "editor.py"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        path = sys.argv[1]
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write({answer!r} + text)
        """))
    script.chmod(0o755)
    return str(script)


def test_review_walks_feedback_human_inbox_and_blocked(ds: DropSite, tmp_path: Path,
                                                       terminal) -> None:
    email = _ask(ds, "Welcome email", {"question": "Send this email?",
                                       "draft": "Hello Ada,\nwelcome aboard.",
                                       "options": ["approve", "revise", "reject"]}, priority=1)
    essay = _ask(ds, "Essay outline", "Is the outline complete?", priority=2)
    later = _ask(ds, "Logo colours", {"question": "Blue or green?"}, priority=3)
    trade = ds.submit(TaskBuilder("Approve trade", "larry").assign("human")
                      .context({"ticker": "NVDA", "size": 100, "options": ["buy", "hold"]})
                      .build())
    robot = ds.submit(TaskBuilder("Not for humans", "larry").assign("coder").build())
    stuck = ds.submit(TaskBuilder("Deploy", "ops").build())
    ds.block(ds.claim("ops", stuck), "waiting for API keys")

    longer = "Add a section on costs.\nAnd cite the 2025 survey.\n"
    term = terminal("review", str(ds.workspace), EDITOR=_editor(tmp_path, longer))

    term.expect("feedback · 1/5")
    term.expect("Welcome email")
    term.expect("Send this email?")
    term.expect("welcome aboard.")
    term.expect("3) reject")
    term.expect("Answer (1-3 or an option")
    term.type("2\r")
    term.expect(f"sent: 'revise' -> {email}")

    term.expect("Is the outline complete?")
    term.type("e\r")
    term.expect(f"-> {essay} is back in inbox/")

    term.expect("Blue or green?")
    term.type("s\r")

    term.expect("inbox · 4/5")
    term.expect("Approve trade")
    term.expect('"ticker": "NVDA"')
    term.expect("2) hold")
    term.type("BUY\r")
    term.expect(f"done: {trade} completed with answer 'buy'")

    term.expect("blocked · 5/5")
    term.expect("Blocked: waiting for API keys")
    term.type("u\r")
    term.expect("Note for the history")
    term.type("keys added\r")
    term.expect(f"unblocked: {stuck}")
    term.expect("Reviewed: 4 answered, 1 skipped.")
    assert term.finish() == 0

    assert ds.get_task(email).context["_feedback_response"] == "revise"
    assert ds.get_task(essay).context["_feedback_response"] == longer.strip()
    assert ds.locate(later).folder == "feedback"
    done = ds.get_task(trade)
    assert ds.locate(trade).folder == "done" and done.result == {"answer": "buy"}
    assert done.history[-2]["claimed_by"] == "human"
    assert ds.locate(robot).folder == "inbox"
    assert ds.locate(stuck).folder == "inbox"
    assert ds.get_task(stuck).history[-1]["note"] == "keys added"


def test_free_text_answer_and_agent_from_environment(ds: DropSite, terminal) -> None:
    tid = ds.submit(TaskBuilder("Pick a name", "larry").assign("alice").build())
    term = terminal("review", str(ds.workspace), DROPSITE_AGENT="alice")
    term.expect("Pick a name")
    term.expect("Answer (free text")
    term.type("call it Dropsite Daemon\r")
    term.expect("Reviewed: 1 answered, 0 skipped.")
    assert term.finish() == 0
    assert ds.get_task(tid).result == {"answer": "call it Dropsite Daemon"}


def test_quit_gives_a_claimed_task_back(ds: DropSite, terminal) -> None:
    first = ds.submit(TaskBuilder("First", "larry").assign("human").priority(1).build())
    second = _ask(ds, "Second", "ok?")
    term = terminal("review", str(ds.workspace))
    term.expect("ok?")
    term.type("s\r")
    term.expect("First")
    term.type("q\r")
    term.expect("Reviewed: 0 answered, 1 skipped.")
    assert term.finish() == 0
    assert ds.locate(first).folder == "inbox"
    assert ds.get_task(first).history[-1]["reason"] == "left in review"
    assert ds.locate(second).folder == "feedback"


def test_ctrl_c_releases_and_exits_130(ds: DropSite, terminal) -> None:
    tid = ds.submit(TaskBuilder("Approve", "larry").assign("human").build())
    term = terminal("review", str(ds.workspace))
    term.expect("Answer (")
    # The prompt is printed just before the read starts; a SIGINT in between is only
    # noticed at the next key, so give the read a moment to begin, as a human would.
    time.sleep(0.5)
    term.type("\x03")
    term.expect("Interrupted.")
    assert term.finish() == 128 + signal.SIGINT  # 130, as shells report Ctrl-C
    assert ds.locate(tid).folder == "inbox"
    assert list((ds.workspace / "active").iterdir()) == []


def test_editor_closed_empty_asks_again(ds: DropSite, tmp_path: Path, terminal) -> None:
    tid = _ask(ds, "Draft", {"question": "Approve?", "options": ["approve", "reject"]})
    term = terminal("review", str(ds.workspace), EDITOR=_editor(tmp_path, ""))
    term.expect("Answer (")
    term.type("e\r")
    term.expect("nothing sent")
    term.type("approve\r")
    term.expect("Reviewed: 1 answered, 0 skipped.")
    assert term.finish() == 0
    assert ds.get_task(tid).context["_feedback_response"] == "approve"


def test_out_of_range_number_asks_again(ds: DropSite, terminal) -> None:
    tid = _ask(ds, "Draft", {"question": "Approve?", "options": ["approve", "reject"]})
    term = terminal("review", str(ds.workspace))
    term.expect("Answer (1-2")
    term.type("3\r")
    term.expect("there is no option 3 (1-2); nothing sent")
    term.type("2\r")
    term.expect("Reviewed: 1 answered, 0 skipped.")
    assert term.finish() == 0
    assert ds.get_task(tid).context["_feedback_response"] == "reject"


def test_nothing_waiting_exits_zero_with_a_message(ds: DropSite) -> None:
    ds.submit(TaskBuilder("for a robot", "me").assign("coder").build())
    first = ds.submit(TaskBuilder("not yet done", "me").assign("coder").build())
    ds.submit(TaskBuilder("after it", "me").assign("human").depends_on(first).build())
    ds.submit(TaskBuilder("tomorrow", "me").assign("human").delay(86400).build())
    out = subprocess.run([DROPSITED, "review", ds.workspace], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("Nothing waiting for review in")


def test_not_a_workspace_is_a_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run([DROPSITED, "review", tmp_path / "nope"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")


def test_plain_feedback_verb_still_answers(ds: DropSite) -> None:
    tid = _ask(ds, "Draft", {"question": "Send?", "options": ["approve", "reject"]})
    out = CliRunner().invoke(main, ["feedback", str(ds.workspace), tid, "approved, send it"])
    assert out.exit_code == 0, out.output
    assert json.loads((ds.workspace / "inbox" / f"{tid}.json").read_text())["context"][
        "_feedback_response"] == "approved, send it"


def test_help_has_an_example() -> None:
    out = CliRunner().invoke(main, ["review", "--help"])
    assert out.exit_code == 0 and "Example:" in out.output and "dropsited review" in out.output


def test_end_of_piped_input_is_a_normal_end(ds: DropSite) -> None:
    """Answers piped in that run out end the review like q (exit 0), the task given back."""
    task_id = ds.submit(TaskBuilder("ask me", "u").assign("human").build())
    result = subprocess.run([str(DROPSITED), "review", str(ds.workspace)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "End of input." in result.stdout
    assert ds.locate(task_id).folder == "inbox"
