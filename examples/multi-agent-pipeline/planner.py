"""planner (exec agent): asks the LLM for a report's sections, then fans out one
task per section to the section writers and fans in to the editor, whose task
depends on every section (it is not handed out before they are all done)."""

from __future__ import annotations

import os
import re

from llm import ask, run_agent

from dropsited import DropSite, TaskBuilder

MAX_SECTIONS = 5


def section_titles(reply: str) -> list[str]:
    """One title per line; list markers ("1.", "-", "*") and blank lines dropped."""
    titles = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip() for line in reply.splitlines()]
    return [t for t in titles if t][:MAX_SECTIONS]


def plan(task: dict) -> dict:
    topic, output_dir = task["context"]["topic"], task["context"]["output_dir"]
    reply = ask("You are the planner of a short report. Answer with section titles only.",
                f"List three section titles for a short report on: {topic}\n"
                "One title per line, nothing else.")
    titles = section_titles(reply)
    if not titles:
        raise ValueError(f"the model gave no section titles: {reply[:200]!r}")
    ds = DropSite(os.environ["DROPSITE_WORKSPACE"], create=False)
    sections = [ds.submit(TaskBuilder(f"Section {n}: {title}", "planner")
                          .context({"topic": topic, "section": title, "index": n})
                          .tag("section").parent(task["id"]).build())
                for n, title in enumerate(titles, 1)]
    editor = ds.submit(TaskBuilder(f"Assemble report: {topic}", "planner")
                       .context({"topic": topic, "output_dir": output_dir, "sections": sections})
                       .tag("edit").parent(task["id"]).depends_on(*sections).build())
    return {"sections": titles, "section_tasks": sections, "editor_task": editor}


if __name__ == "__main__":
    run_agent(plan)
