"""summariser (service agent): a Python AgentLoop the daemon keeps alive.

It polls the workspace itself for tasks tagged `python`. A task with
context.needs_approval goes to a human first (feedback/); when the answer
comes back it publishes or not, as the human said.
"""

from __future__ import annotations

import os

from dropsited import AgentLoop, DropSite, Task


def summary_of(text: str) -> str:
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= 80 else first[:79] + "…"


def main() -> None:
    ds = DropSite(os.environ["DROPSITE_WORKSPACE"], create=False)

    def summarise(task: Task) -> dict | None:
        summary = summary_of(str(task.context.get("text", "")))
        if not task.context.get("needs_approval"):
            return {"summary": summary}
        answer = task.context.get("_feedback_response")
        if answer is None:
            ds.request_feedback(task, {"question": "Publish this summary?", "draft": summary,
                                       "options": ["approve", "reject"]})
            return None  # the task is in feedback/ now; the loop leaves it there
        return {"summary": summary, "published": str(answer).lower().startswith("approve")}

    AgentLoop(ds, os.environ.get("DROPSITE_AGENT", "summariser"), summarise,
              filter_tags=["python"], poll_interval=0.5).run()


if __name__ == "__main__":
    main()
