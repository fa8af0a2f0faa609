"""`dropsited check --schema`: a JSON Schema rendered from the manifest's schema table, for
editors. The shipped manifests validate against it, the committed copy is the command's
output, and it agrees with the parser on what one key's value may be."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from dropsited.daemon.manifest import ManifestError, parse_manifest
from dropsited.daemon.manifest.json_schema import manifest_json_schema
from dropsited.daemon.manifest.schema import AGENT_FIELDS, REQUIRED

REPO = Path(__file__).resolve().parents[2]
DROPSITED = Path(sys.executable).parent / "dropsited"
SHIPPED = [REPO / "agents.example.yaml", *sorted(REPO.glob("examples/*/agents.yaml"))]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    out = subprocess.run([DROPSITED, "check", "--schema"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and not out.stderr, out.stderr
    schema = json.loads(out.stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_the_shipped_manifests_validate(validator, path: Path) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_the_example_names_the_schema_for_editors() -> None:
    first = (REPO / "agents.example.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./docs/agents.schema.json"


def test_the_committed_schema_is_the_commands_output(validator) -> None:
    committed = json.loads((REPO / "docs" / "agents.schema.json").read_text())
    assert committed == validator.schema, "run: dropsited check --schema > docs/agents.schema.json"


def test_every_key_of_the_table_is_in_the_schema_with_help() -> None:
    schema = manifest_json_schema()
    agent = schema["properties"]["agents"]["items"]
    assert list(agent["properties"]) == list(AGENT_FIELDS)
    assert agent["required"] == list(REQUIRED)
    defaults = schema["properties"]["defaults"]["properties"]
    assert set(defaults) == set(AGENT_FIELDS) - set(REQUIRED)
    assert all(p.get("description") for p in agent["properties"].values())
    for nested in ("backoff", "give_up", "log"):
        mapping = agent["properties"][nested]["anyOf"][1]["properties"]
        assert all(p.get("description") for p in mapping.values()), nested


# One key's value at a time, each accepted or refused by both the parser and the schema.
GOOD = [
    "timeout: 30", "timeout: 1.5s", "timeout: 250ms", "timeout: 5M", "timeout: null",
    "max_memory: 512K", "max_memory: 100MB", "max_memory: 1GiB", "max_memory: 1.5k",
    "stop_signal: hup", "stop_signal: SIGTERM",
    "backoff: 5", "backoff: {initial: 1s, max: 1m, factor: 3}", "give_up: 2",
    "log: logs/a.log", "log: {max_bytes: 1M, backups: 0}", "env: {PORT: 8080, DEBUG: true}",
    "tags: [code, 7]", "tags: null", "mode: worker", "restart: on-failure",
    "concurrency: 3", "start_seconds: 0", "description: 42", "role: null", "cwd: sub",
]
BAD = [
    "timeout: ten", "timeout: 0", "timeout: -1", "timeout: [1]", "max_memory: 1X",
    "max_memory: 0", "mode: daemon", "restart: sometimes", "input: file", "tags: []",
    "tags: code", "concurrency: 0", "concurrency: two", "backoff: {factor: 0.5}",
    "backoff: {maximum: 3}", "give_up: {failures: 0}", "log: {backups: -1}", "comand: [x]",
    "env: [A]", "cwd: ''", "stop_signal: 'TERM!'",
]


def _doc(line: str, name: str = "a") -> str:
    return textwrap.dedent(f"""\
        workspace: ws
        agents:
          - name: {name}
            command: [x]
            {line}
        """)


def _parser_accepts(text: str) -> bool:
    try:
        parse_manifest(text, "agents.yaml", environ={})
    except ManifestError:
        return False
    return True


@pytest.mark.parametrize("line", GOOD)
def test_a_value_the_parser_accepts_validates(validator, line: str) -> None:
    text = _doc(line)
    assert _parser_accepts(text)
    assert list(validator.iter_errors(yaml.safe_load(text))) == []


@pytest.mark.parametrize("line", BAD)
def test_a_value_the_parser_refuses_does_not_validate(validator, line: str) -> None:
    text = _doc(line)
    assert not _parser_accepts(text)
    assert list(validator.iter_errors(yaml.safe_load(text))) != []


@pytest.mark.parametrize("name, ok", [
    ("coder", True), ("a.b@c+d-e_f", True), ("9lives", True), ("a" * 64, True),
    ("a" * 65, False), ("-a", False), ("a..b", False), ("'a b'", False), ("'a/b'", False),
    ("''", False),
])
def test_agent_names_follow_the_protocols_rule_in_both(validator, name: str, ok: bool) -> None:
    text = _doc("", name=name)
    assert _parser_accepts(text) is ok
    assert (list(validator.iter_errors(yaml.safe_load(text))) == []) is ok


def test_top_level_keys() -> None:
    v = jsonschema.Draft7Validator(manifest_json_schema())
    assert list(v.iter_errors({"agents": [{"name": "a", "command": "x"}]})) == []  # -w gives ws
    assert list(v.iter_errors({"workspace": "ws", "agents": []}))
    assert list(v.iter_errors({"workspace": "ws"}))
    assert list(v.iter_errors({"workspace": "ws", "agents": [{"name": "a"}]}))
    assert list(v.iter_errors({"workspace": "ws", "agents": [{"name": "a", "command": "x"}],
                               "extra": 1}))
    assert list(v.iter_errors({"workspace": "ws", "defaults": {"name": "a"},
                               "agents": [{"name": "a", "command": "x"}]}))
