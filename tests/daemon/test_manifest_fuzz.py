"""Whatever the input, the manifest parser answers with ManifestError lines, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropsited.daemon.manifest import ManifestError, parse_manifest

DROPSITED = Path(sys.executable).parent / "dropsited"

VALID = """\
workspace: ./ws
defaults:
  timeout: 5m
  env: {HOME_DIR: "${HOME}", LIT: "$$x"}
  backoff: {max: 30}
agents:
  - name: coder
    command: [python, agent.py, "{task_file}"]
    input: argv
    tags: [code, review]
    concurrency: 2
    max_memory: 200M
    stop_signal: INT
    log: {file: logs/coder.log, max_bytes: 1MB, backups: 2}
  - &w
    name: worker
    command: python worker.py
    mode: worker
    give_up: {failures: 3, window: 1m}
    restart: on-failure
  - <<: *w
    name: svc
    mode: service
"""
ENV = {"HOME": "/home/x"}

# Values that are wrong in interesting ways for almost any key.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["{task_file}", "${HOME}", "${NOPE}", "$$", "${", "1.5s", "1GiB", "..", "TERM"]
    ),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def parse_or_error(text: str | bytes) -> None:
    """The property: a Manifest or a ManifestError of one-line messages, nothing else."""
    try:
        parse_manifest(text, "agents.yaml", environ=ENV)
    except ManifestError as e:
        assert e.errors
        assert all(line.startswith("agents.yaml") and "\n" not in line for line in e.errors)


def test_the_seed_document_is_valid() -> None:
    assert [a.name for a in parse_manifest(VALID, "agents.yaml", environ=ENV).agents] == [
        "coder",
        "worker",
        "svc",
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    parse_or_error(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    parse_or_error(data)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The valid document with a few characters deleted, inserted or lines shuffled."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "swap_lines", "dup_line"]))
        pos = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 10)) :]
        elif kind == "insert":
            chunk = draw(
                st.sampled_from(
                    [":", "-", " ", "\n", "[", "{", "*w", "&", "!!", "'", '"', "\t", "\x00"]
                )
            )
            text = text[:pos] + chunk + text[pos:]
        else:
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            text = "".join(lines)
    return text


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_mutated_valid_documents(text: str) -> None:
    parse_or_error(text)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["agent", "defaults", "top", "nested"]),
    st.sampled_from(
        [
            "name",
            "command",
            "cwd",
            "env",
            "mode",
            "input",
            "tags",
            "concurrency",
            "timeout",
            "restart",
            "start_seconds",
            "backoff",
            "give_up",
            "stop_signal",
            "stop_grace",
            "max_memory",
            "log",
            "description",
            "role",
            "workspace",
            "agents",
            "zzz",
        ]
    ),
    ODD_VALUES,
)
def test_any_key_with_an_odd_value(where: str, key: str, value: object) -> None:
    """Structured mutation: put a wrong-typed value at a real key, re-dumped as YAML."""
    doc = yaml.safe_load(VALID)
    if where == "agent":
        doc["agents"][0][key] = value
    elif where == "defaults":
        doc["defaults"][key] = value
    elif where == "top":
        doc[key] = value
    else:
        doc["agents"][1]["backoff"] = {key: value}
    parse_or_error(yaml.safe_dump(doc))


def test_a_few_through_the_real_cli(tmp_path: Path) -> None:
    """Subprocesses are slow, so a handful of fixed nasty inputs rather than hypothesis."""
    inputs: list[bytes] = [
        VALID.encode(),
        VALID.replace("concurrency: 2", "concurrency: two").encode(),
        VALID[: len(VALID) // 2].encode() + b"\xff\xfe[{",
        b"a: &a [*a, *a]\nb: *a\n",
        b"[" * 3000,
        b"\x00\x01\x02binary",
        b"- " * 2000,
    ]
    for i, data in enumerate(inputs):
        path = tmp_path / f"m{i}.yaml"
        path.write_bytes(data)
        result = subprocess.run(
            [str(DROPSITED), "check", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"HOME": "/home/x", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode in (0, 2), (i, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, i
        assert (result.returncode == 0) == (i == 0), (i, result.stderr)
