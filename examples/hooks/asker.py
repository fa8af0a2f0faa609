"""An exec agent that asks a person before it finishes (`dropsited feedback` answers it)."""

import json
import sys

task = json.load(sys.stdin)
answer = task["context"].get("_feedback_response")
if answer is None:
    print(json.dumps({"_dropsite": {"status": "feedback", "question": f"Publish {task['title']!r}?",
                                    "options": ["yes", "no"]}}))
else:
    print(json.dumps({"published": answer == "yes"}))
