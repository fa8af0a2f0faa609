"""editor (exec agent): runs once every section is done (its task depends on them),
asks the LLM for a summary and writes report.md into the task's output_dir."""

from __future__ import annotations

import os
from pathlib import Path

from llm import ask, run_agent

from dropsited import DropSite


def assemble(task: dict) -> dict:
    context = task["context"]
    ds = DropSite(os.environ["DROPSITE_WORKSPACE"], create=False)
    sections = sorted((ds.get_task(tid).result for tid in context["sections"]),
                      key=lambda s: s["index"])
    body = "\n\n".join(f"## {s['section']}\n\n{s['text']}" for s in sections)
    summary = ask("You are the editor of a short report. Answer with one sentence.",
                  f"Summarise this report on {context['topic']} in one sentence:\n\n{body}")
    out = Path(context["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    tmp = out / "report.md.tmp"
    tmp.write_text(f"# {context['topic']}\n\n_{summary}_\n\n{body}\n")
    tmp.replace(report)
    return {"report": str(report), "sections": len(sections), "summary": summary}


if __name__ == "__main__":
    run_agent(assemble)
