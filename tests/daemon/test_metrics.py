"""Prometheus metrics (issue 14 part 4) against a real daemon: the textfile and the HTTP
endpoint are parsed by prometheus_client's own parser, and their values checked
against what the run did (tasks done and failed, queue depths, states)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest
from harness import agent, daemon_session, py, wait_until
from prometheus_client.parser import text_string_to_metric_families

from dropsited.daemon.metrics import Family, Sample, render
from dropsited.daemon.metrics_export import parse_address

# exits 1 when the title says so: a failed attempt (max_retries 0: to failed/)
JUDGE = "import json, sys\ntask = json.load(sys.stdin)\nsys.exit(1 if 'bad' in task['title'] else 0)"


def parse(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} through the reference parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def run_tasks(d) -> None:
    ids = [d.drop(f"good {i}", max_retries=0) for i in range(3)]
    ids += [d.drop(f"bad {i}", max_retries=0) for i in range(2)]
    for task_id in ids[:3]:
        d.wait_in(task_id, "done")
    for task_id in ids[3:]:
        d.wait_in(task_id, "failed")


@pytest.fixture
def run_daemon(tmp_path):
    with daemon_session(tmp_path) as make:
        yield make


def test_the_textfile_counts_what_the_run_did(run_daemon) -> None:
    d = run_daemon([agent("judge", py(JUDGE))])
    run_tasks(d)
    assert d.stop() == 0  # the exporter writes a last time on the way out
    text = (d.ws / ".dropsited" / "metrics.prom").read_text()
    values = parse(text)
    assert values[("dropsited_tasks_done_total", (("agent", "judge"),))] == 3
    assert values[("dropsited_tasks_failed_total", (("agent", "judge"),))] == 2
    assert values[("dropsited_task_run_seconds_count", (("agent", "judge"),))] == 5
    assert values[("dropsited_task_run_seconds_bucket", (("agent", "judge"), ("le", "+Inf")))] == 5
    assert values[("dropsited_queue_tasks", (("folder", "done"),))] == 3
    assert values[("dropsited_queue_tasks", (("folder", "failed"),))] == 2
    assert values[("dropsited_queue_tasks", (("folder", "inbox"),))] == 0
    assert values[("dropsited_inbox_oldest_age_seconds", ())] == 0
    assert values[("dropsited_quarantined_files", ())] == 0
    assert values[("dropsited_agent_restarts_total", (("agent", "judge"),))] == 0
    kinds = families(text)
    assert kinds["dropsited_tasks_done"] == "counter"
    assert kinds["dropsited_task_run_seconds"] == "histogram"
    assert kinds["dropsited_agent_state"] == "gauge"
    assert not list((d.ws / ".dropsited").glob(".metrics.prom*"))  # no temp file left


def test_the_http_endpoint_serves_the_same_metrics(run_daemon) -> None:
    d = run_daemon([agent("judge", py(JUDGE)),
                    agent("svc", py("import time\nwhile True: time.sleep(1)"), mode="service",
                          start_seconds=0)],
                   "--metrics", "127.0.0.1:0")
    url = wait_until(lambda: re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)",
                                       d.stderr()), 10, "the metrics URL", daemon=d).group(1)
    run_tasks(d)
    d.drop("waits", to="nobody")  # an inbox task no agent takes

    def scraped() -> dict | None:
        with urllib.request.urlopen(url, timeout=5) as response:
            values = parse(response.read().decode())
        ok = (values.get(("dropsited_tasks_done_total", (("agent", "judge"),))) == 3
              and values.get(("dropsited_agent_state", (("agent", "svc"), ("state", "RUNNING")))) == 1)
        return values if ok else None

    values = wait_until(scraped, 10, "scraped counts", daemon=d)
    assert values[("dropsited_tasks_failed_total", (("agent", "judge"),))] == 2
    assert values[("dropsited_queue_tasks", (("folder", "inbox"),))] == 1
    assert values[("dropsited_inbox_oldest_age_seconds", ())] >= 0
    assert values[("dropsited_agent_processes", (("agent", "svc"),))] == 1
    assert d.stop() == 0


def test_metrics_without_a_port_or_with_a_bad_one_is_one_line(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text("workspace: ws\nagents: [{name: a, command: [x]}]\n")
    out = subprocess.run([sys.executable, "-m", "dropsited.cli", "up", "-c",
                          str(tmp_path / "a.yaml"), "--metrics", "localhost:http"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --metrics: expected [HOST:]PORT with a port 0-65535, got 'localhost:http'"]


def test_without_prometheus_client_metrics_names_the_extra(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text("workspace: ws\nagents: [{name: a, command: [x]}]\n")
    hide = ("import sys, importlib.util as u; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if n == 'prometheus_client' else real(n, *a); "
            "from dropsited.cli import main; sys.argv[0] = 'dropsited'; main()")
    out = subprocess.run([sys.executable, "-c", hide, "up", "-c", str(tmp_path / "a.yaml"),
                          "--metrics", "9108"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --metrics needs the optional extra 'metrics' (prometheus_client): "
        "pip install 'dropsited[metrics]'"]
    assert not (tmp_path / "ws").exists()  # refused before anything started


def test_the_renderer_escapes_labels_and_parses_back() -> None:
    family = Family("dropsited_x", "counter", 'help with \\ and "quotes"',
                    (Sample("dropsited_x_total", (("agent", 'we"ird\\name\n'),), 2.0),))
    [parsed] = list(text_string_to_metric_families(render([family]).decode()))
    assert parsed.samples[0].labels == {"agent": 'we"ird\\name\n'} and parsed.samples[0].value == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("9108", ("127.0.0.1", 9108)), (":9108", ("127.0.0.1", 9108)),
    ("0.0.0.0:9108", ("0.0.0.0", 9108)), ("127.0.0.1:0", ("127.0.0.1", 0))])
def test_metrics_addresses_bind_loopback_unless_told(text: str, expected: tuple) -> None:
    assert parse_address(text) == expected


def test_restarts_stay_monotonic_when_a_reload_replaces_the_group() -> None:
    from dropsited.daemon.metrics import Monotonic
    restarts = Monotonic()
    assert [restarts.observe("a", v) for v in (0, 2, 3)] == [0, 2, 3]
    assert restarts.observe("a", 0) == 3  # a new group (reload): carried over
    assert restarts.observe("a", 1) == 4
    assert restarts.observe("b", 1) == 1
