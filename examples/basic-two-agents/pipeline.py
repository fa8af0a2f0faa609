"""The researcher -> writer pipeline as two Python AgentLoops in one process.

    python examples/basic-two-agents/pipeline.py "honey bees" --out /tmp/out

Drops a research task, runs both agents until the writer has written
<out>/article.md, then stops them. researcher.sh and writer.sh do the same
job as exec agents under `dropsited up`; both write the same article.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from dropsited import AgentLoop, DropSite, Task, TaskBuilder

HERE = Path(__file__).resolve().parent
KNOWLEDGE = HERE / "knowledge.txt"


def lookup(topic: str) -> list[str]:
    """The facts filed under `topic` in knowledge.txt (lines "topic: fact")."""
    facts = []
    for line in KNOWLEDGE.read_text().splitlines():
        key, _, _ = line.partition(":")
        if key.lower() == topic.lower():
            facts.append(line.split(": ", 1)[1])
    return facts


def make_researcher(ds: DropSite):
    def research(task: Task) -> dict:
        topic, output_dir = task.context["topic"], task.context["output_dir"]
        findings = lookup(topic)
        if not findings:
            raise ValueError(f"no notes on {topic!r} in knowledge.txt")
        writer_task = (
            TaskBuilder(f"Write article: {topic}", "researcher")
            .context({"topic": topic, "output_dir": output_dir, "findings": findings})
            .assign("writer")
            .tag("writing")
            .parent(task.id)
            .build()
        )
        ds.submit(writer_task)
        return {"findings": findings, "writer_task": writer_task.id}

    return research


def write(task: Task) -> dict:
    topic, findings = task.context["topic"], task.context["findings"]
    out = Path(task.context["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    text = f"# {topic[:1].upper() + topic[1:]}\n\n## Findings\n\n"
    text += "".join(f"- {fact}\n" for fact in findings)
    text += f"\n_{len(findings)} findings, researched by researcher, written by writer._\n"
    article = out / "article.md"
    tmp = out / "article.md.tmp"
    tmp.write_text(text)
    tmp.replace(article)  # readers never see half an article
    return {"article": str(article)}


def run(workspace: Path, topic: str, output_dir: Path, timeout: float = 30.0,
        max_retries: int = 3) -> Task:
    """Drop one research task and run both agents until its writer task is done."""
    ds = DropSite(workspace)
    research_id = ds.submit(
        TaskBuilder(f"Research {topic}", "me")
        .context({"topic": topic, "output_dir": str(output_dir.resolve())})
        .assign("researcher")
        .tag("research")
        .max_retries(max_retries)
        .build()
    )
    loops = [
        AgentLoop(ds, "researcher", make_researcher(ds), filter_tags=["research"],
                  poll_interval=0.1, verbose=False),
        AgentLoop(ds, "writer", write, filter_tags=["writing"], poll_interval=0.1,
                  verbose=False),
    ]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        return _wait_for_writer(ds, research_id, time.monotonic() + timeout)
    finally:
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join()


def _wait_for_writer(ds: DropSite, research_id: str, deadline: float) -> Task:
    while time.monotonic() < deadline:
        found = ds.locate(research_id)  # None only if it vanished: handled as not failed
        if found is not None and found.folder == "failed":
            raise RuntimeError(f"research failed: {ds.get_task(research_id).history[-1]}")
        for task in ds.list_tasks("done"):
            if task.parent_id == research_id:
                return task
        time.sleep(0.05)
    raise TimeoutError("the writer did not finish in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topic", nargs="?", default="honey bees")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--workspace", type=Path, default=HERE / "workspace")
    args = parser.parse_args(argv)
    done = run(args.workspace, args.topic, args.out)
    print(f"article written: {done.result['article']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
