"""`dropsited web`: the real server process, a real daemon and its agent, and Debian's
Chromium driven headless through selenium (skipped, saying why, where it cannot run)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the optional 'serve' extra is not installed")

from harness import agent, py  # noqa: E402

from dropsited import DropSite, TaskBuilder  # noqa: E402

from . import browser  # noqa: E402

DROPSITED = str(Path(sys.executable).parent / "dropsited")

# Asks a person first; once answered, finishes with the answer as its result.
ASKER = py("""
import json, sys
task = json.load(sys.stdin)
answer = task["context"].get("_feedback_response")
if answer is None:
    print(json.dumps({"_dropsite": {"status": "feedback", "question": "Publish <b>now</b>?",
                                    "options": ["approve", "reject"], "draft": "Q3 went well"}}))
else:
    print(json.dumps({"published": answer == "approve", "answer": answer}))
""")


class WebServer:
    """A `dropsited web` subprocess on a free port; `url` carries the token."""

    def __init__(self, ws: Path, *args: str) -> None:
        self.proc = subprocess.Popen([DROPSITED, "web", str(ws), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.proc.stdout.readline()
        self.url = self.proc.stdout.readline().strip()
        self.base, _, query = self.url.partition("?")
        self.token = query.removeprefix("token=")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def web():
    started: list[WebServer] = []

    def start(ws: Path, *args: str) -> WebServer:
        server = WebServer(ws, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def status_of(url: str, method: str = "GET", headers: dict | None = None,
              body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_without_the_token_every_request_is_refused(tmp_path: Path, web) -> None:
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    task_id = ds.submit(TaskBuilder("t", "test").max_retries(0).build())
    ds.fail(ds.claim("a", task_id), "boom")
    server = web(ws)
    assert server.base.startswith("http://127.0.0.1:") and len(server.token) >= 32

    assert status_of(server.url)[0] == 200
    for path in ("", "api/state", f"api/task/{task_id}", "static/app.js", "events"):
        code, text = status_of(server.base + path)
        assert code == 403 and "token" in text, path
        assert status_of(server.base + path + "?token=not-the-token")[0] == 403
    cookie = {"Cookie": f"dropsite_token={server.token}"}
    assert status_of(server.base + "api/state", headers=cookie)[0] == 200
    retry = json.dumps({"task_id": task_id, "by": "Eve"}).encode()
    # An action needs the header, not just the cookie a cross-site form would carry.
    assert status_of(server.base + "api/retry", "POST", cookie, retry)[0] == 403
    assert status_of(server.url, headers={"Host": "attacker.example"})[0] == 403
    assert ds.locate(task_id).folder == "failed"

    ok, reply = status_of(server.base + "api/retry", "POST",
                          {"X-Dropsite-Token": server.token}, retry)
    assert ok == 200 and json.loads(reply) == {"task_id": task_id, "folder": "inbox"}
    assert ds.get_task(task_id).history[-1] | {"at": None} == {
        "status": "inbox", "at": None, "retried": True, "by": "Eve"}
    bad, reply = status_of(server.base + "api/retry", "POST",
                           {"X-Dropsite-Token": server.token}, b"{not json")
    assert bad == 400 and "not valid JSON" in reply
    bad, reply = status_of(server.base + "api/unblock", "POST",
                           {"X-Dropsite-Token": server.token},
                           json.dumps({"task_id": "../x", "by": "Eve"}).encode())
    assert bad == 400 and "looks like a path" in json.loads(reply)["error"]
    assert server.stop() == 0


@pytest.mark.skipif(browser.why_not() is not None, reason=str(browser.why_not()))
def test_a_person_answers_in_the_browser_and_the_agent_finishes(run_daemon, web,
                                                                tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def until(condition, timeout: float = 20):
        """Poll the page; an element replaced by a redraw meanwhile is looked up again."""
        return WebDriverWait(driver, timeout, ignored_exceptions=[
            StaleElementReferenceException]).until(condition)

    d = run_daemon([agent("asker", ASKER, tags=["publish"])])
    task_id = d.drop("Publish the report", tags=("publish",))
    d.wait_in(task_id, "feedback")
    server = web(d.ws)
    driver = browser.start(tmp_path / "chromium-profile")
    try:
        driver.get(server.base)  # no token: refused, also in a browser
        assert "403 forbidden" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(server.url)
        card = f'[data-task-id="{task_id}"]'
        text = until(lambda drv: drv.find_element(By.CSS_SELECTOR, card).text)
        assert "Publish <b>now</b>?" in text  # shown as text, not as markup
        assert not driver.find_elements(By.CSS_SELECTOR, f"{card} b")
        driver.find_element(By.ID, "person").send_keys("Grace Hopper")

        def click_approve(drv) -> bool:
            drv.find_element(By.CSS_SELECTOR, card).find_element(
                By.XPATH, ".//button[text()='approve']").click()
            return True

        until(click_approve)  # looked up afresh: a live redraw may replace the card

        done = d.wait_in(task_id, "done", timeout=30)
        assert done["result"] == {"published": True, "answer": "approve"}
        answered = next(e for e in done["history"] if e.get("feedback_received"))
        assert answered["by"] == "Grace Hopper"
        # The page follows by itself (server-sent events): the card goes, done/ counts it.
        until(lambda drv: not drv.find_elements(By.CSS_SELECTOR, card))
        until(lambda drv: drv.find_element(
            By.CSS_SELECTOR, '[data-queue="done"]').text.split() == ["done", "1"])
        assert driver.find_element(By.ID, "live").text == "live"
        agents = driver.find_element(By.ID, "agents").text
        assert "asker" in agents and "RUNNING" in agents
    finally:
        driver.quit()
    assert server.stop() == 0
    assert d.stop() == 0


def test_actions_record_the_person_and_refuse_what_is_not_theirs(tmp_path: Path, web) -> None:
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    asked = ds.submit(TaskBuilder("asked", "bot").build())
    ds.request_feedback(ds.claim("bot", asked), {"question": "which?", "options": ["a", "b"]})
    mine = ds.submit(TaskBuilder("sign it", "legal").assign("alice").build())
    robots = ds.submit(TaskBuilder("for a robot", "legal").assign("robot").build())
    stuck = ds.submit(TaskBuilder("stuck", "ci").build())
    ds.block(ds.claim("ci", stuck), "no keys")
    held = ds.submit(TaskBuilder("held", "x").build())
    ds.claim("worker", held)
    server = web(ws, "--human", "alice")

    def act(name: str, **body: object) -> tuple[int, dict]:
        code, text = status_of(server.base + f"api/{name}", "POST",
                               {"X-Dropsite-Token": server.token}, json.dumps(body).encode())
        return code, json.loads(text)

    cookie = {"Cookie": f"dropsite_token={server.token}"}
    state = json.loads(status_of(server.base + "api/state", headers=cookie)[1])
    assert [c["id"] for c in state["waiting"]["feedback"]] == [asked]
    assert state["waiting"]["feedback"][0]["options"] == ["a", "b"]
    assert [c["id"] for c in state["waiting"]["assigned"]] == [mine]  # not the robot's
    assert [c["reason"] for c in state["waiting"]["blocked"]] == ["no keys"]

    assert act("answer", task_id=asked, answer="neither, c", by="Bo")[0] == 200
    assert ds.get_task(asked).context["_feedback_response"] == "neither, c"
    assert ds.get_task(asked).history[-1]["by"] == "Bo"
    assert act("answer", task_id=mine, answer="signed", by="Alice", folder="inbox",
               agent="alice") == (200, {"task_id": mine, "folder": "done"})
    assert ds.get_task(mine).result == {"answer": "signed", "by": "Alice"}
    assert act("unblock", task_id=stuck, by="Bo", note="keys added")[0] == 200
    assert ds.get_task(stuck).history[-1] | {"at": None} == {
        "status": "inbox", "at": None, "unblocked": True, "by": "Bo", "note": "keys added"}

    code, reply = act("answer", task_id=robots, answer="x", by="Bo", folder="inbox",
                      agent="robot")
    assert code == 400 and "not a human agent" in reply["error"]
    code, reply = act("answer", task_id=held, answer="x", by="Bo")
    assert code == 400 and reply["error"] == f"no task {held} in feedback/ (it is in active/)"
    code, reply = act("retry", task_id=held, by="Bo")
    assert code == 400 and "(it is in active/)" in reply["error"]
    assert act("answer", task_id=asked, answer="again", by="")[1]["error"].startswith("by:")
    assert act("nosuch", task_id=asked)[0] == 404
    assert ds.locate(held).folder == "active" and ds.locate(robots).folder == "inbox"
    assert server.stop() == 0


def test_the_page_is_served_from_the_package_and_escapes_nothing_into_html(tmp_path: Path,
                                                                          web) -> None:
    """No CDN, no build step: the page, script and style are files of the package, and the
    script never hands task text to innerHTML."""
    server = web(DropSite(tmp_path / "ws", durable=False).workspace)
    cookie = {"Cookie": f"dropsite_token={server.token}"}
    page = status_of(server.url)[1]
    script = status_of(server.base + "static/app.js", headers=cookie)[1]
    assert "http" not in page.replace(server.token, "").split("<body>")[0].lower()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "textContent" in script and "EventSource" in script
    assert server.stop() == 0
