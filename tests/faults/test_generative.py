"""Generative suite (issue 11): arbitrary bytes and JSON-ish documents in every folder of
a workspace, at start-up and under a running daemon.

Each example writes a batch of files (arbitrary bytes; documents with huge integers,
non-finite numbers, lone surrogates, deep nesting, wrong types for every field,
duplicate keys) into inbox/, active/, done/, temp names and quarantine/*.reason and
agents/*.json, half before `dropsited up` starts and half while it runs, beside good
tasks. Then: the daemon stays up, every good task is done, every inbox entry left is a
task a reader accepts, every listing command exits 0 without a traceback, and the
daemon stops and starts again on what is left. Deterministic (derandomized) in the
default run; `-m soak` runs more examples with random seeds (GENERATIVE_EXAMPLES=N).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from chaos.common import assert_all_done_once, report
from harness import DROPSITED, agent, daemon_session, py, wait_until
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dropsited.protocol import DropSite
from dropsited.protocol.holder import SEP, this_host
from dropsited.protocol.store import BadFile, parse_temp_name

GRACE = 0.3
ECHO = py("import sys; sys.stdin.read(); print('{\"ok\": 1}')")
FIELDS = ("id", "title", "created_by", "status", "description", "assigned_to", "priority",
          "context", "result", "tags", "parent_id", "retry_count", "max_retries", "created_at",
          "updated_at", "history")

# JSON text built by hand, so it can hold what json.dumps never writes.
_atoms = st.one_of(
    st.just("NaN"), st.just("Infinity"), st.just("-Infinity"), st.just("1e400"),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=19, max_value=6000).map(lambda n: "9" * n),  # huge integers
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"), st.just("null"),
    st.text(max_size=20).map(json.dumps),
    st.sampled_from(['"\\ud800"', '"\\udfff x"', '"\\ud83d\\ude00"', '"\\u0000"']),
    st.sampled_from(['"../../etc/passwd"', '"a/b"', '"x~y"', '""', '"' + "a" * 70 + '"']),
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


_values = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(st.text(max_size=8).map(json.dumps), inner), max_size=4)
        .map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"),
        st.integers(min_value=90, max_value=3000).map(_deep),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw) -> bytes:
    """A task-shaped object with some fields of any type, maybe duplicated keys."""
    keys = draw(st.lists(st.sampled_from(FIELDS + ("extra", "_x")), max_size=8))
    pairs = [f'"{k}": {draw(_values)}' for k in keys]
    if draw(st.booleans()):
        pairs.append('"title": "dup"')
    return ("{" + ", ".join(pairs) + "}").encode("utf-8", "surrogatepass")


_contents = st.one_of(st.binary(max_size=300), documents(), _values.map(str.encode))
_stems = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    st.text(alphabet="abc.~-_ \n\x1b", min_size=1, max_size=12))


@st.composite
def entries(draw) -> tuple[str, str, bytes]:
    """(folder, name, content) anywhere a stranger could write."""
    folder = draw(st.sampled_from(["inbox", "inbox", "inbox", "active", "done", "failed",
                                   "feedback", "quarantine", "agents"]))
    stem = draw(_stems).replace("/", "_").replace("\x00", "_")
    kind = draw(st.sampled_from(["json", "temp", "claim", "reason", "other"]))
    if kind == "temp":
        pid = draw(st.sampled_from([1, 2, 999_999, os.getpid()]))
        host = draw(st.sampled_from([this_host(), "elsewhere"]))
        name = f".{stem}{SEP}{host}{SEP}{pid}{SEP}{draw(st.sampled_from([0, 1, 12345]))}.tmp"
    elif kind == "claim" and folder == "active":
        name = f"{stem}{SEP}ghost{SEP}{this_host()}{SEP}999999{SEP}1{SEP}1.json"
    elif kind == "reason":
        name = f"{stem}.reason"
    elif kind == "other":
        name = stem
    else:
        name = f"{stem}.json"
    return folder, name, draw(_contents)


def plant(ws: Path, batch: list[tuple[str, str, bytes]]) -> int:
    written = 0
    for folder, name, content in batch:
        path = ws / folder / name
        if name in (".", "..") or path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        try:
            path.write_bytes(content)
        except OSError:
            continue
        written += 1
    return written


def listings(ws: Path) -> list[list[str]]:
    return [["inbox", str(ws)], *(["list", str(ws), f] for f in
            ("inbox", "active", "done", "failed", "blocked", "feedback", "quarantine")),
            ["stats", str(ws)], ["status", str(ws)], ["agents", str(ws)],
            ["list", str(ws), "quarantine", "--json"], ["stats", str(ws), "--json"]]


def check_listings(ws: Path) -> None:
    for args in listings(ws):
        result = subprocess.run([DROPSITED, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode in (0, 3), (args, result.stderr[-2000:])  # status: 3 = stopped
        assert "Traceback" not in result.stderr, (args, result.stderr[-2000:])


def inbox_is_total(ws: Path, skip_temps: bool = False) -> None:
    """Whatever is left in inbox/ is a task a reader accepts (the rest was quarantined).

    `skip_temps`: temp names belong to recovery, which a running daemon does once a
    minute (and at every start); another host's are left for an hour in any case."""
    store = DropSite(ws, create=False).store
    for entry in os.listdir(ws / "inbox"):
        temp = parse_temp_name(entry)
        if temp and (skip_temps or temp[1] != this_host()):
            continue  # another host's writer may still finish it (for TEMP_MAX_AGE)
        try:
            store.load_entry("inbox", entry)
        except BadFile as exc:
            raise AssertionError(f"inbox/{entry!r} left unquarantined: {exc.reason}") from None


EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "2"))
BATCH = st.lists(entries(), min_size=30, max_size=60)


def run_example(tmp_path: Path, before, during) -> dict:
    """One example in a fresh folder of its own (hypothesis reuses the test's tmp_path)."""
    with daemon_session(Path(tempfile.mkdtemp(dir=tmp_path))) as run_daemon:
        return _run(run_daemon, before, during)


def _run(run_daemon, before, during) -> dict:
    d = run_daemon([agent("echo", ECHO, concurrency=2),
                    agent("w", py("import json, sys\nfor l in sys.stdin:\n t = json.loads(l)\n"
                                  " print(json.dumps({'id': t['id'], 'status': 'done'}), flush=True)"),
                          mode="worker", tags=["w"])],
                   "--corrupt-grace", str(GRACE), start=False)
    planted = plant(d.ws, before)
    d.start()
    good = [d.drop(f"good {i}") for i in range(5)] + [d.drop("w", tags=("w",))]
    planted += plant(d.ws, during)
    for task_id in good:
        d.wait_in(task_id, "done", timeout=30)
    wait_until(lambda: d.proc.poll() is None and not _unsettled(d.ws), 20,
               "inbox to hold only readable tasks")  # (AssertionError names the entry)
    assert d.proc.poll() is None
    check_listings(d.ws)
    assert d.stop() == 0, d.stderr()[-3000:]
    d.start()  # start-up on everything that is left
    good.append(d.drop("after restart"))
    d.wait_in(good[-1], "done", timeout=30)
    inbox_is_total(d.ws)
    assert d.stop() == 0, d.stderr()[-3000:]
    assert "Traceback" not in d.stderr()
    assert_all_done_once(d.ws, set(good))
    return {"planted": planted}


def _unsettled(ws: Path) -> bool:
    try:
        inbox_is_total(ws, skip_temps=True)
    except AssertionError as exc:
        _unsettled.last = str(exc)  # type: ignore[attr-defined]
        return True
    return False


@pytest.mark.timeout(600)
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, print_blob=False,
          phases=[Phase.explicit, Phase.generate],  # a daemon per example: no shrinking
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(before=BATCH, during=BATCH)
def test_anything_in_any_folder_never_stops_the_daemon(tmp_path, before, during) -> None:
    report({"suite": "generative", **run_example(tmp_path, before, during)})


@pytest.mark.soak
@pytest.mark.timeout(3600)
@settings(max_examples=max(EXAMPLES, 40), deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(before=BATCH, during=BATCH)
def test_anything_in_any_folder_soak(tmp_path, before, during) -> None:
    report({"suite": "generative-soak", **run_example(tmp_path, before, during)})
