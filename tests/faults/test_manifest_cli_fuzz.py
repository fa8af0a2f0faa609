"""Manifest fuzzing through the `dropsited check` command itself.

tests/daemon/test_manifest_fuzz.py fuzzes the parser in-process with random text,
bytes, mutated documents and odd values at real keys. This adds what it does not
cover: random YAML *trees* shaped like manifests (real key names at random depths,
random types), run through the click command (exit status and stderr format) and,
for a seeded sample, through the installed `dropsited` binary in a subprocess.
The property: exit 0, or exit 2 with one line per error, `FILE:...`; never a traceback.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropsited.cli import main

DROPSITED = str(Path(sys.executable).parent / "dropsited")
KEYS = ["workspace", "defaults", "agents", "name", "command", "cwd", "env", "mode", "input",
        "tags", "concurrency", "timeout", "restart", "start_seconds", "backoff", "give_up",
        "stop_signal", "stop_grace", "max_memory", "log", "description", "role", "initial",
        "max", "factor", "failures", "window", "file", "max_bytes", "backups", "x"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
    st.text(max_size=12),
    st.sampled_from(["exec", "worker", "service", "argv", "stdin", "always", "never",
                     "on-failure", "TERM", "SIGKILL", "10s", "1.5m", "-1s", "0", "5M", "1e400",
                     "{task_file}", "${HOME}", "${UNSET_VAR}", "$$", "a\x00b", "..", "/"]),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


@st.composite
def manifests(draw: st.DrawFn) -> object:
    """Mostly manifest-shaped: a mapping with agents whose keys are real ones."""
    if draw(st.integers(0, 9)) == 0:
        return draw(TREES)
    agents = draw(st.lists(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=6), max_size=3))
    doc = {"workspace": draw(st.one_of(st.just("ws"), SCALARS)), "agents": agents}
    if draw(st.booleans()):
        doc["defaults"] = draw(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=4))
    return doc


def dump(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def check_answer(code: int, stderr: str, path: str) -> None:
    assert code in (0, 2), (code, stderr)
    assert "Traceback" not in stderr
    if code == 2:
        lines = stderr.strip("\n").split("\n")
        assert lines and all(line.startswith(path) for line in lines), stderr


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=manifests())
def test_manifest_trees_through_the_command(doc: object, tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(dump(doc))
    result = CliRunner().invoke(main, ["check", "-c", str(path)], env={"HOME": "/home/x"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    check_answer(result.exit_code, result.stderr, str(path))


def test_manifest_trees_through_the_binary(tmp_path: Path) -> None:
    """A seeded sample through the real executable (subprocesses are slow: 20 of them)."""
    rng = random.Random(5)
    for i in range(20):
        agents = [{rng.choice(KEYS): rng.choice([None, 1, "x", [1], {"a": 1}, "10s", "worker"])
                   for _ in range(rng.randint(0, 5))} for _ in range(rng.randint(0, 3))]
        if i % 4 == 0 and agents:
            agents[0].update({"name": "ok", "command": ["/bin/true"]})
        path = tmp_path / f"m{i}.yaml"
        path.write_text(dump({"workspace": "ws", "agents": agents}))
        result = subprocess.run([DROPSITED, "check", "-c", str(path)], capture_output=True,
                                text=True, timeout=30, env={"HOME": "/home/x", "PATH": "/usr/bin:/bin"})
        check_answer(result.returncode, result.stderr, str(path))
