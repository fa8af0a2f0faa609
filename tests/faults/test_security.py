"""Security: workspace permissions, start-up warnings, no shell or path from task data,
and an agent environment without the daemon's secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from harness import agent, py

from dropsited.protocol import TaskBuilder

DROPSITED = str(Path(sys.executable).parent / "dropsited")
FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback", "agents")


def init(ws: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        subprocess.run([DROPSITED, "init", str(ws)], check=True, capture_output=True, timeout=30)
    finally:
        os.umask(old)


def test_init_workspace_is_not_writable_by_others_even_with_umask_0(tmp_path: Path) -> None:
    for umask in (0o022, 0o002, 0o000):
        ws = tmp_path / f"ws{umask:o}"
        init(ws, umask)
        for path in [ws, *(ws / f for f in FOLDERS)]:
            mode = os.stat(path).st_mode
            assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"umask {umask:o}: {path} is {mode:o}"


def test_daemon_warns_about_writable_workspace_and_manifest(run_daemon) -> None:
    d = run_daemon([agent("noop", ["/bin/true"])], start=False)
    d.ws.chmod(0o777)
    d.manifest.chmod(0o666)
    (d.ws / "inbox").chmod(0o775)
    d.start()
    assert d.stop() == 0
    log = d.stderr()
    assert f"{d.ws} is writable by everyone" in log
    assert f"{d.manifest} is writable by everyone" in log
    assert f"{d.ws / 'inbox'} is writable by its group" in log


def test_task_text_never_reaches_a_shell_or_a_path(run_daemon, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    payloads = [f"$(touch {pwned}1)", f"`touch {pwned}2`", f"x; touch {pwned}3", f"x' && touch {pwned}4 '",
                f'"; touch {pwned}5; "', f"../../../../{pwned.name}6", f"| touch {pwned}7"]
    # A string command goes through /bin/sh with {task_file} quoted; the agent echoes the
    # title back through the shell in the way a careful script does (quoted expansion).
    sh = 'title=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\'title\'])" {task_file}); printf "%s" "$title" > /dev/null; echo "{}"'
    d = run_daemon([agent("shell", sh, input="argv", tags=["sh"]),
                    agent("listcmd", py("import sys, json; print(json.dumps({'t': json.load(sys.stdin)['title']}))"),
                          tags=["py"])])
    ids = []
    for text in payloads:
        for tag in ("sh", "py"):
            ids.append(d.ds.submit(TaskBuilder(text, text[:60]).tag(tag).describe(text)
                                   .context({"cmd": text, "path": text}).build()))
    for task_id in ids:
        d.wait_in(task_id, "done")
    assert d.stop() == 0
    assert not list(tmp_path.glob("pwned*")), "a task's text was run by a shell"
    assert not list(Path("/").glob(f"{pwned.name}*"))
    names = {p.name for p in d.ws.rglob("*")}
    assert not any("touch" in n or "pwned" in n for n in names), "task text became a path"


ENV_DUMP = "import json, os, sys; sys.stdin.read(); print(json.dumps({'env': dict(os.environ)}))"


def test_agents_do_not_inherit_the_daemons_secrets(run_daemon) -> None:
    secrets = {"API_TOKEN": "s3cr3t-token", "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t",
               "DATABASE_URL": "postgres://u:pw@db/x"}
    d = run_daemon([agent("plain", py(ENV_DUMP), tags=["plain"]),
                    agent("given", py(ENV_DUMP), tags=["given"],
                          env={"API_TOKEN": "${API_TOKEN}"})], env=secrets)
    plain = d.wait_in(d.drop("p", tags=("plain",)), "done")["result"]["env"]
    given = d.wait_in(d.drop("g", tags=("given",)), "done")["result"]["env"]
    assert d.stop() == 0
    assert not set(secrets) & set(plain), sorted(plain)
    assert not any(v in json.dumps(plain) for v in secrets.values())
    assert given["API_TOKEN"] == "s3cr3t-token"
    assert "AWS_SECRET_ACCESS_KEY" not in given and "DATABASE_URL" not in given
