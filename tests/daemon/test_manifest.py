"""The agents manifest: good manifests of every mode, defaults, and every error's exact line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dropsited.daemon.manifest import (
    MAX_BYTES,
    AgentSpec,
    Backoff,
    GiveUp,
    LogSpec,
    ManifestError,
    load_manifest,
    parse_manifest,
)

DROPSITED = Path(sys.executable).parent / "dropsited"


def parse(text: str, path: str | Path = "agents.yaml", environ: dict[str, str] | None = None, **kw):
    return parse_manifest(textwrap.dedent(text), path, environ=environ or {}, **kw)


def errors(text: str | bytes, environ: dict[str, str] | None = None, **kw) -> list[str]:
    if isinstance(text, str):
        text = textwrap.dedent(text)
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "agents.yaml", environ=environ or {}, **kw)
    assert str(info.value) == "\n".join(info.value.errors)
    assert all("\n" not in e for e in info.value.errors)
    return info.value.errors


def one_agent(extra: str, command: str = "[python, agent.py]") -> str:
    """A manifest whose only agent has `extra` (one line) on line 5."""
    return f"workspace: ws\nagents:\n  - name: a\n    command: {command}\n    {extra}\n"


# --- good manifests --------------------------------------------------------------------------


def test_exec_agent_gets_every_default(tmp_path: Path) -> None:
    m = parse(
        """\
        workspace: ./ws
        agents:
          - name: coder
            command: [python, agent.py]
        """,
        tmp_path / "agents.yaml",
    )
    assert m.workspace == tmp_path / "ws"
    assert m.path == tmp_path / "agents.yaml"
    (a,) = m.agents
    assert a == AgentSpec(
        name="coder",
        command=("python", "agent.py"),
        cwd=tmp_path,
        env={},
        mode="exec",
        input="stdin",
        tags=None,
        concurrency=1,
        timeout=None,
        restart="never",
        start_seconds=1.0,
        backoff=Backoff(1.0, 60.0, 2.0),
        give_up=GiveUp(5, 60.0),
        stop_signal=signal.SIGTERM,
        stop_grace=10.0,
        max_memory=None,
        log=LogSpec(None, 10 * 1024 * 1024, 3),
        description=None,
        role=None,
    )


def test_worker_and_service_restart_always_and_keep_every_key(tmp_path: Path) -> None:
    m = parse(
        """\
        workspace: /abs/ws
        agents:
          - name: w1
            command: python worker.py --json-lines
            mode: worker
            cwd: agents/w1
            tags: [code, review, code]
            concurrency: 3
            timeout: 1.5s
            start_seconds: 0
            backoff: {initial: 0.5, max: 10, factor: 3}
            give_up: {failures: 2, window: 5m}
            stop_signal: INT
            stop_grace: 2
            max_memory: 512K
            log: {file: logs/w1.log, max_bytes: 1MB, backups: 0}
            description: Writes code
            role: coder
          - name: svc@host
            command: [node, svc.js]
            mode: service
            restart: on-failure
        """,
        tmp_path / "agents.yaml",
    )
    assert m.workspace == Path("/abs/ws")
    w, s = m.agents
    assert (w.mode, w.restart, w.command) == ("worker", "always", "python worker.py --json-lines")
    assert w.cwd == tmp_path / "agents" / "w1"
    assert w.tags == ("code", "review")
    assert (w.concurrency, w.timeout, w.start_seconds) == (3, 1.5, 0.0)
    assert w.backoff == Backoff(0.5, 10.0, 3)
    assert w.give_up == GiveUp(2, 300.0)
    assert (w.stop_signal, w.stop_grace, w.max_memory) == (signal.SIGINT, 2.0, 512 * 1024)
    assert w.log == LogSpec(tmp_path / "logs" / "w1.log", 1 << 20, 0)
    assert (w.description, w.role) == ("Writes code", "coder")
    assert (s.name, s.mode, s.restart) == ("svc@host", "service", "on-failure")


def test_defaults_apply_unless_the_agent_sets_the_key() -> None:
    m = parse(
        """\
        workspace: ws
        defaults:
          timeout: 5m
          tags: [code]
          env: {SHARED: one, OVERRIDE: from-defaults}
          backoff: {max: 30}
          log: {backups: 7}
        agents:
          - name: a
            command: [a]
          - name: b
            command: [b]
            timeout: null
            tags: null
            env: {OVERRIDE: mine, OWN: x}
            backoff: 2
        """
    )
    a, b = m.agents
    assert (a.timeout, a.tags, a.env) == (
        300.0,
        ("code",),
        {"SHARED": "one", "OVERRIDE": "from-defaults"},
    )
    assert a.backoff == Backoff(1.0, 30.0, 2.0)
    assert a.log.backups == 7
    assert (b.timeout, b.tags) == (None, None)
    assert b.env == {"SHARED": "one", "OVERRIDE": "mine", "OWN": "x"}
    assert b.backoff == Backoff(2.0, 30.0, 2.0)
    assert m.defaults_raw["backoff"] == {"max": 30}


def test_yaml_anchors_and_merge_keys_work() -> None:
    m = parse(
        """\
        workspace: ws
        agents:
          - &base
            name: a
            command: [run]
            concurrency: 4
          - <<: *base
            name: b
        """
    )
    assert [(a.name, a.concurrency) for a in m.agents] == [("a", 4), ("b", 4)]


def test_env_expansion_uses_the_given_environ_and_dollar_dollar_escapes() -> None:
    m = parse(
        one_agent('env: {KEY: "${API_KEY}", MIX: "a-${USER}-$$HOME-$PATH", PORT: 8080, ON: yes}'),
        environ={"API_KEY": "s3cret", "USER": "bob"},
    )
    assert m.agents[0].env == {
        "KEY": "s3cret",
        "MIX": "a-bob-$HOME-$PATH",
        "PORT": "8080",
        "ON": "yes",
    }


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30", 30.0),
        ("0.25", 0.25),
        ('"30"', 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("1d", 86400.0),
        ('" 2 m "', 120.0),
        ("null", None),
    ],
)
def test_durations(written: str, seconds: float | None) -> None:
    assert parse(one_agent(f"timeout: {written}")).agents[0].timeout == seconds


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("1024", 1024),
        ("512K", 512 << 10),
        ("200M", 200 << 20),
        ("1G", 1 << 30),
        ("100MB", 100 << 20),
        ("1GiB", 1 << 30),
        ("1.5k", 1536),
        ('"10"', 10),
        ("null", None),
    ],
)
def test_sizes(written: str, size: int | None) -> None:
    assert parse(one_agent(f"max_memory: {written}")).agents[0].max_memory == size


@pytest.mark.parametrize(
    ("written", "number"),
    [
        ("TERM", signal.SIGTERM),
        ("SIGTERM", signal.SIGTERM),
        ("hup", signal.SIGHUP),
        ("QUIT", signal.SIGQUIT),
        ("USR1", signal.SIGUSR1),
        ("USR2", signal.SIGUSR2),
        ("KILL", signal.SIGKILL),
    ],
)
def test_stop_signal_names(written: str, number: int) -> None:
    assert parse(one_agent(f"stop_signal: {written}")).agents[0].stop_signal == number


def test_argv_substitutes_the_task_file_without_format() -> None:
    m = parse(
        """\
        workspace: ws
        agents:
          - name: list
            command: [agent, "--task={task_file}", "{0} {x}"]
            input: argv
          - name: shell
            command: "agent < {task_file} && echo {task_file}"
            input: argv
        """
    )
    lst, sh = m.agents
    evil = "/ws/t {0} $(rm -rf x)'.json"
    assert lst.argv(evil) == ["agent", f"--task={evil}", "{0} {x}"]
    assert lst.argv(None) == ["agent", "--task={task_file}", "{0} {x}"]
    quoted = "'/ws/t {0} $(rm -rf x)'\"'\"'.json'"
    assert sh.argv(evil) == ["/bin/sh", "-c", f"agent < {quoted} && echo {quoted}"]


def test_equality_drives_reload_decisions() -> None:
    text = one_agent("concurrency: 2")
    a, b = parse(text).agents[0], parse(text).agents[0]
    assert a == b and hash(a) == hash(b)
    c = parse(one_agent("concurrency: 5")).agents[0]
    d = parse(one_agent("timeout: 5")).agents[0]
    assert a != c and a.same_except_concurrency(c)
    assert not a.same_except_concurrency(d)


def test_workspace_override_wins_and_makes_the_key_optional(tmp_path: Path) -> None:
    text = "agents:\n  - {name: a, command: [a]}\n"
    m = parse_manifest(text, "agents.yaml", workspace_override=tmp_path / "other")
    assert m.workspace == tmp_path / "other"
    assert errors(text) == [
        "agents.yaml:1: missing required key 'workspace' (the folder holding the task folders)"
    ]


def test_load_manifest_reads_the_file_and_to_dict_is_json(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(one_agent("stop_signal: INT"))
    m = load_manifest(path)
    data = json.loads(json.dumps(m.to_dict()))
    assert data["workspace"] == str(tmp_path / "ws")
    assert data["agents"][0]["stop_signal"] == "SIGINT"
    assert data["agents"][0]["command"] == ["python", "agent.py"]


# --- errors: one line each, file:line: key path: message -----------------------------------


def test_the_documented_example_error() -> None:
    text = (
        "workspace: ws\nagents:\n"
        + "".join(f"  - name: a{i}\n    command: [x]\n" for i in range(2))
        + "  - name: a2\n    command: [x]\n    timeout: ten\n"
    )
    assert errors(text) == ["agents.yaml:9: agents[2].timeout: expected seconds, got 'ten'"]


def test_all_errors_are_collected_in_file_order() -> None:
    errs = errors(
        """\
        workspace: ws
        defaults:
          name: x
          timout: 4
        agents:
          - name: a/b
            comand: [x]
            timeout: -1
          - name: ok
            command: [x]
            env: {X: "${NOPE}", Y: 1, Y: 2}
          - name: ok
            command: []
            max_memory: lots
            stop_signal: FOO
            give_up: {failures: 0, windows: 3}
          - 7
        """
    )
    assert errs == [
        "agents.yaml:3: defaults.name: cannot be set in defaults (set it on each agent)",
        "agents.yaml:4: defaults.timout: unknown key (did you mean 'timeout'?)",
        "agents.yaml:6: agents[0].name: agent name 'a/b' must start with a letter or digit and use "
        "only letters, digits and '_.@+-' (no '..')",
        "agents.yaml:6: agents[0]: missing required key 'command'",
        "agents.yaml:7: agents[0].comand: unknown key (did you mean 'command'?)",
        "agents.yaml:8: agents[0].timeout: must be > 0, got -1",
        "agents.yaml:11: agents[1].env.Y: duplicate key (first at line 11, column 25)",
        "agents.yaml:11: agents[1].env.X: undefined variable ${NOPE} (write $$ for a literal $)",
        "agents.yaml:12: agents[2].name: duplicate agent name 'ok' (lines 9 and 12)",
        "agents.yaml:13: agents[2].command: the command list is empty or starts with an empty string",
        "agents.yaml:14: agents[2].max_memory: expected a size in bytes (like 512K, 200M, 1G), got 'lots'",
        "agents.yaml:15: agents[2].stop_signal: expected a signal name like TERM, INT, HUP, QUIT, "
        "USR1, KILL, got 'FOO'",
        "agents.yaml:16: agents[2].give_up.windows: unknown key (did you mean 'window'?)",
        "agents.yaml:16: agents[2].give_up.failures: must be >= 1, got 0",
        "agents.yaml:17: agents[3]: expected a mapping with 'name' and 'command', got 7",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("timeout: ten", "timeout: expected seconds, got 'ten'"),
        ("timeout: 0", "timeout: must be > 0, got 0"),
        ("timeout: true", "timeout: expected seconds, got true"),
        ("timeout: .nan", "timeout: expected seconds, got .nan"),
        ("timeout: 5 minutes", "timeout: expected seconds, got '5 minutes'"),
        ("timeout: [1]", "timeout: expected seconds, got a list"),
        ("stop_grace: -1", "stop_grace: must be >= 0, got -1"),
        (
            "timeout: 99999999999999999999s",
            "timeout: must be at most 1e+09, got '99999999999999999999s'",
        ),
        ("timeout: " + "9" * 400, "timeout: must be at most 1e+09, got " + "9" * 60 + "..."),
        (
            "max_memory: " + "9" * 400 + "G",
            "max_memory: must be at most 9.22337e+18, got '" + "9" * 60 + "...'",
        ),
        ("concurrency: 10000000", "concurrency: must be at most 1e+06, got 10000000"),
        ("start_seconds: null", "start_seconds: expected seconds, got null"),
        ("concurrency: 0", "concurrency: must be >= 1, got 0"),
        ("concurrency: 1.5", "concurrency: expected an integer, got 1.5"),
        ("concurrency: '2'", "concurrency: expected an integer, got '2'"),
        ("mode: daemon", "mode: expected one of 'exec', 'worker', 'service', got 'daemon'"),
        ("input: file", "input: expected one of 'stdin', 'argv', got 'file'"),
        (
            "restart: sometimes",
            "restart: expected one of 'always', 'on-failure', 'never', got 'sometimes'",
        ),
        ("max_memory: 1X", "max_memory: expected a size in bytes (like 512K, 200M, 1G), got '1X'"),
        ("max_memory: 0", "max_memory: must be >= 1, got 0"),
        (
            "stop_signal: 99",
            "stop_signal: expected a signal name like TERM, INT, HUP, QUIT, USR1, KILL, got 99",
        ),
        ("tags: code", "tags: expected a list of tags, got 'code'"),
        (
            "tags: []",
            "tags: empty list: the agent would take no task (omit tags to take untagged work)",
        ),
        ("tags: [a, {b: c}]", "tags[1]: expected a tag, got a mapping"),
        ("env: [A=1]", "env: expected a mapping of NAME: value, got a list"),
        ("env: {A: null}", "env.A: expected a string, got null"),
        ('env: {A: "${1X}"}', "env.A: bad variable reference '${1X}' (write $$ for a literal $)"),
        ('env: {A: "${OPEN"}', "env.A: bad variable reference '${' (write $$ for a literal $)"),
        ("backoff: {initial: 10, max: 5}", "backoff: max (5) is less than initial (10)"),
        ("backoff: {factor: 0.5}", "backoff.factor: must be >= 1, got 0.5"),
        ("backoff: fast", "backoff: expected seconds, got 'fast'"),
        ("give_up: [3]", "give_up: expected a mapping with keys failures, window, got a list"),
        ("log: {file: '', backups: -1}", "log.file: the path is empty"),
        ("cwd: {a: b}", "cwd: expected a path, got a mapping"),
        ("description: [a]", "description: expected a string, got a list"),
        ("comand: x", "comand: unknown key (did you mean 'command'?)"),
        ("zzz: x", "zzz: unknown key"),
    ],
)
def test_one_bad_value(extra: str, message: str) -> None:
    assert errors(one_agent(extra))[0] == f"agents.yaml:5: agents[0].{message}"


def test_argv_needs_a_placeholder_in_the_command() -> None:
    assert errors(one_agent("input: argv")) == [
        "agents.yaml:4: agents[0].command: input is 'argv' but the command has no {task_file} placeholder"
    ]


def test_argv_and_placeholder_only_apply_to_exec() -> None:
    errs = errors(one_agent("mode: worker\n    input: argv", command="[w, '{task_file}']"))
    assert errs == [
        "agents.yaml:4: agents[0].command: {task_file} is only filled in for mode 'exec', not 'worker'",
        "agents.yaml:6: agents[0].input: 'argv' only applies to mode 'exec' (this agent's mode is 'worker')",
    ]


def test_cross_key_error_from_defaults_says_so() -> None:
    errs = errors(
        "workspace: ws\ndefaults:\n  input: argv\nagents:\n  - {name: s, command: s, mode: service}\n"
    )
    assert errs == [
        "agents.yaml:3: agents[0].input (from defaults.input): 'argv' only applies to mode 'exec' "
        "(this agent's mode is 'service')"
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ('""', "agent name is empty"),
        ("a" * 65, "agent name is 65 characters long (at most 64)"),
        ("a..b", "agent name 'a..b' must start with"),
        ("-a", "agent name '-a' must start with"),
        ("'a b'", "agent name 'a b' must start with"),
        ("null", "expected an agent name, got null"),
    ],
)
def test_bad_agent_names(name: str, problem: str) -> None:
    errs = errors(f"workspace: ws\nagents:\n  - name: {name}\n    command: [x]\n")
    assert errs[0].startswith(f"agents.yaml:3: agents[0].name: {problem}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "agents.yaml: file is empty (expected a mapping with 'workspace' and 'agents')"),
        (
            "# only a comment\n",
            "agents.yaml: file is empty (expected a mapping with 'workspace' and 'agents')",
        ),
        (
            "- a\n- b\n",
            "agents.yaml:1: expected a mapping with 'workspace' and 'agents' at the top level, got a list",
        ),
        (
            "hello\n",
            "agents.yaml:1: expected a mapping with 'workspace' and 'agents' at the top level, got 'hello'",
        ),
        (
            "workspace: ws\nagents: {a: 1}\n",
            "agents.yaml:2: agents: expected a list of agents, got a mapping",
        ),
        (
            "workspace: ws\nagents: []\n",
            "agents.yaml:2: agents: the list is empty (define at least one agent)",
        ),
        ("workspace: ws\n", "agents.yaml:1: missing required key 'agents' (a list of agents)"),
        ("workspace: ws\nagents:\n", "agents.yaml:2: agents: expected a list of agents, got null"),
        (
            "workspace: ws\nagent: []\n",
            "agents.yaml:2: agent: unknown key (did you mean 'agents'?)",
        ),
        (
            "workspace: ws\ndefaults: 3\nagents: [{name: a, command: a}]\n",
            "agents.yaml:2: defaults: expected a mapping of per-agent keys, got 3",
        ),
        (
            "workspace: ws\nworkspace: ws2\nagents: [{name: a, command: a}]\n",
            "agents.yaml:2: workspace: duplicate key (first at line 1)",
        ),
        (
            "workspace: ws\n[a]: b\nagents: [{name: a, command: a}]\n",
            "agents.yaml:2: keys must be plain strings, got a list",
        ),
        (
            "workspace: ws\nagents: [{name: a, command: !!int x}]\n",
            "agents.yaml:2: agents[0].command: expected a command (a list of strings, or a string for "
            "/bin/sh -c), got x (tag 'tag:yaml.org,2002:int')",
        ),
    ],
)
def test_document_shape_errors(text: str, message: str) -> None:
    assert message in errors(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workspace: ws\nagents: [\n  - x\n", "agents.yaml:3: YAML syntax error: "),
        (
            "workspace: ws\n  bad: indent\n",
            "agents.yaml:2: YAML syntax error: mapping values are not allowed here",
        ),
        ("a: 1\n---\nb: 2\n", "agents.yaml:2: YAML syntax error: but found another document"),
        ("workspace: *nope\n", "agents.yaml:1: YAML syntax error: found undefined alias 'nope'"),
        (
            "workspace: ws\x00\n",
            "agents.yaml:1: YAML syntax error: unacceptable character #x0000: special characters",
        ),
        (
            "workspace: ws\nagents: [\n" + "[" * 5000,
            "agents.yaml: YAML syntax error: nesting is too deep",
        ),
    ],
)
def test_yaml_syntax_errors(text: str, message: str) -> None:
    (line,) = errors(text)
    assert line.startswith(message)


def test_non_utf8_is_one_line() -> None:
    assert errors(b"workspace: ws\nagents: \xff\xfe\n") == [
        "agents.yaml:2: not valid UTF-8 (byte 0xff)"
    ]


def test_alias_bomb_is_refused_before_expansion() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (line,) = errors("\n".join(lines) + "\n")
    assert (
        line
        == "agents.yaml: document is too large: more than 10000 YAML nodes (aliases count each time they are used)"
    )


def test_recursive_alias_is_refused() -> None:
    (line,) = errors("workspace: &a [*a]\nagents: []\n")
    assert "document is too large" in line


def test_huge_input_is_refused() -> None:
    (line,) = errors("# " + "x" * MAX_BYTES)
    assert line == f"agents.yaml: file is too large (more than {MAX_BYTES} bytes)"


def test_missing_file_names_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as info:
        load_manifest("agents.yaml")
    assert info.value.errors == ["agents.yaml: cannot read: No such file or directory"]
    with pytest.raises(ManifestError) as info:
        load_manifest(".")
    assert info.value.errors == [".: cannot read: Is a directory"]


# --- the real `dropsited check` --------------------------------------------------------------


def run_check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DROPSITED), "check", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_check_cli_ok_prints_one_line_per_agent(tmp_path: Path) -> None:
    (tmp_path / "agents.yaml").write_text(
        "workspace: ws\nagents:\n"
        "  - {name: coder, command: [python, a.py], tags: [code], concurrency: 2}\n"
        "  - {name: w, command: run it, mode: worker}\n"
    )
    result = run_check(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"agents.yaml: OK, 2 agents, workspace {tmp_path / 'ws'}"
    assert lines[1].split() == ["coder", "exec", "x2", "tags=code", "python", "a.py"]
    assert lines[2].split()[:3] == ["w", "worker", "x1"]

    result = run_check("--json", "-w", str(tmp_path / "other"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workspace"] == str(tmp_path / "other")
    assert [a["name"] for a in data["agents"]] == ["coder", "w"]


def test_check_cli_errors_go_to_stderr_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(one_agent("timeout: ten"))
    result = run_check("-c", "bad.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "bad.yaml:5: agents[0].timeout: expected seconds, got 'ten'\n"

    result = run_check(cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "agents.yaml: cannot read: No such file or directory\n",
    )


def test_check_cli_help_has_an_example(tmp_path: Path) -> None:
    result = run_check("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Example:" in result.stdout and "dropsited check -c agents.yaml" in result.stdout


def test_short_forms_of_give_up_log_and_stop_signal(tmp_path: Path) -> None:
    """`give_up: 5`, `log: FILE` and `stop_signal: 15` mean what they say, like `backoff: 5`."""
    text = "workspace: ws\nagents:\n  - name: a\n    command: [echo]\n" \
           "    give_up: 5\n    log: logs/a.log\n    stop_signal: 15\n"
    spec = parse_manifest(text, tmp_path / "agents.yaml").agents[0]
    assert spec.give_up.failures == 5
    assert spec.log.file == tmp_path / "logs" / "a.log"
    assert spec.stop_signal == 15
