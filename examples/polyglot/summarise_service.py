"""A service agent: a plain AgentLoop script that polls the workspace itself.

The daemon only keeps it running (and returns its task to the inbox if it dies).
A task with context {"needs_approval": true} goes to feedback/ first; once a
human answers (`dropsited feedback WS ID "approve"`), it comes back here with
the answer in context["_feedback_response"].
"""

import os

from dropsited import AgentLoop, DropSite

ds = DropSite(os.environ["DROPSITE_WORKSPACE"])


def summarise(task):
    text = task.context.get("text", task.title)
    summary = text.split(".")[0].strip()[:80]
    if task.context.get("needs_approval") and "_feedback_response" not in task.context:
        ds.request_feedback(task, {"question": "Publish this summary?", "draft": summary,
                                   "options": ["approve", "reject"]})
        return None
    return {"summary": summary, "chars": len(text),
            "approval": task.context.get("_feedback_response")}


if __name__ == "__main__":
    AgentLoop(ds, os.environ.get("DROPSITE_AGENT", "summariser"), summarise,
              filter_tags=["python"], poll_interval=0.5).run()
