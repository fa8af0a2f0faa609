"""Make the screenshots of docs/WEB.md: a real daemon, real tasks, the real page in
Debian's headless Chromium (as the browser test drives it).

    .venv/bin/python docs/screenshots.py        # writes docs/web-review.png, docs/web-timeline.png

Takes about 40 s: the chart samples queue depths every 10 s, so the script keeps
the agents busy for a while before taking the pictures.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serve"))

import browser  # noqa: E402

from dropsited import DropSite, TaskBuilder  # noqa: E402

DROPSITED = str(Path(sys.executable).parent / "dropsited")
WORKER = """
import json, sys, time
task = json.load(sys.stdin)
time.sleep(0.3)
if "flaky" in task["title"]:
    sys.exit(1)
print(json.dumps({"words": len(task["title"].split())}))
"""


def main() -> None:
    reason = browser.why_not()
    if reason:
        sys.exit(f"cannot take screenshots: {reason}")
    with tempfile.TemporaryDirectory(prefix="dropsited-shots-") as tmp:
        root = Path(tmp)
        ws = root / "workspace"
        ds = DropSite(ws, durable=False)
        (root / "agents.yaml").write_text(yaml.safe_dump({"workspace": str(ws), "agents": [
            {"name": "counter", "command": [sys.executable, "-c", WORKER], "tags": ["count"],
             "concurrency": 2},
            {"name": "summariser", "mode": "service",
             "command": [sys.executable, "-c", "import time; time.sleep(3600)"]}]}))
        daemon = subprocess.Popen([DROPSITED, "up", "-c", str(root / "agents.yaml"),
                                   "--retry-base", "0.1"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        web = subprocess.Popen([DROPSITED, "web", str(ws), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
        web.stdout.readline()
        url = web.stdout.readline().strip()
        people_tasks(ds)
        driver = browser.start(root / "profile")
        try:
            driver.get(url)
            for second in range(36):
                title = "flaky import" if second % 5 == 0 else f"count words batch {second}"
                ds.submit(TaskBuilder(title, "scheduler").tag("count").max_retries(0).build())
                time.sleep(1)
            driver.find_element("id", "person").send_keys("Ada")
            time.sleep(1.5)
            shoot(driver, ROOT / "docs" / "web-review.png")
            driver.set_window_size(1280, 800)
            driver.execute_script("window.scrollTo(0, 0)")
            driver.find_element("css selector", "#waiting .card h3 button").click()
            time.sleep(1)
            shoot(driver, ROOT / "docs" / "web-timeline.png", full=False)
        finally:
            driver.quit()
            for proc in (web, daemon):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)


def people_tasks(ds: DropSite) -> None:
    """One task of each kind that waits for a person."""
    asked = ds.submit(TaskBuilder("Publish the Q3 summary", "planner").tag("summary").build())
    ds.request_feedback(ds.claim("summariser", asked), {
        "question": "Publish this summary to the team channel?",
        "options": ["approve", "revise", "reject"],
        "draft": "Q3: revenue up 12 %, churn down to 3.1 %, two launches shipped.",
        "audience": "#team"})
    ds.submit(TaskBuilder("Sign the ACME renewal", "legal-bot").assign("human")
              .describe("The renewal is unchanged except the price (+4 %).")
              .context({"options": ["signed", "refused"], "contract": "acme-2027.pdf"}).build())
    blocked = ds.submit(TaskBuilder("Deploy v2.4 to production", "ci").build())
    ds.block(ds.claim("deployer", blocked), "waiting for the production API keys")
    failed = ds.submit(TaskBuilder("Fetch exchange rates", "cron").max_retries(0).build())
    ds.fail(ds.claim("fetcher", failed), "HTTP 503 from rates provider after 3 tries")



def shoot(driver, path: Path, full: bool = True) -> None:
    if full:
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(height + 40, 800), 3000))
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
