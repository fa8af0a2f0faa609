"""section-writer (exec agent, several at once): writes one section of the report."""

from __future__ import annotations

from llm import ask, run_agent


def write_section(task: dict) -> dict:
    context = task["context"]
    text = ask("You write one section of a short report: one plain paragraph, no heading.",
               f"Write the section \"{context['section']}\" of a report on {context['topic']}.")
    return {"index": context["index"], "section": context["section"], "text": text}


if __name__ == "__main__":
    run_agent(write_section)
