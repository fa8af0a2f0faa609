"""The rendered and shipped service files: in sync, accepted by systemd-analyze, valid plists."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropsited.service.defaults import DEFAULT_DRAIN_GRACE, STOP_TIMEOUT
from dropsited.service.render import (
    PLACEHOLDER_PROGRAM,
    PLACEHOLDER_SPEC,
    SHIPPED,
    ServiceSpec,
    render,
    render_shipped_file,
    systemd_quote,
)
from dropsited.service.render_shipped import REPO_ROOT, stale_files

DROPSITED = Path(sys.executable).parent / "dropsited"
SYSTEMD_UNITS = ["systemd/system/dropsited.service", "systemd/user/dropsited.service"]


def spec_for(tmp_path: Path, **changes) -> ServiceSpec:
    """A spec with real paths, including awkward characters, and a real executable."""
    workspace = tmp_path / "my work%dir"
    workspace.mkdir(exist_ok=True)
    fields = {
        "program": (str(DROPSITED),),
        "manifest": str(tmp_path / "agents.yaml"),
        "workspace": str(workspace),
        "working_directory": str(tmp_path),
        "writable_paths": (str(workspace),),
        "log_dir": str(tmp_path / "logs"),
        "path_env": "/usr/bin:/bin",
        "user": "root",
    }
    return ServiceSpec(**{**fields, **changes})


def systemd_verify(unit: Path, *, user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `systemd-analyze verify` without needing systemd as PID 1 (user mode needs a runtime dir)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (Debian package: systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    argv = ["systemd-analyze", "verify", "--man=no", *(["--user"] if user else []), str(unit)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def assert_verified(unit: Path, *, user: bool, tmp_path: Path) -> None:
    """Verify exits 0 and says nothing about our file (unknown keys are only warnings)."""
    result = systemd_verify(unit, user=user, tmp_path=tmp_path)
    complaints = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@pytest.mark.parametrize("relative", list(SHIPPED))
def test_shipped_files_match_the_generator(relative):
    assert (REPO_ROOT / relative).read_text(encoding="utf-8") == render_shipped_file(relative)


def test_render_shipped_check_finds_stale_files(tmp_path):
    assert stale_files(REPO_ROOT) == []
    assert stale_files(tmp_path) == list(SHIPPED)


@pytest.mark.parametrize("relative", SYSTEMD_UNITS)
def test_shipped_units_pass_systemd_analyze_verify(relative, tmp_path):
    # verify insists that ExecStart's binary exists: swap only the placeholder program.
    text = (REPO_ROOT / relative).read_text(encoding="utf-8")
    unit = tmp_path / "dropsited.service"
    unit.write_text(text.replace(PLACEHOLDER_PROGRAM, str(DROPSITED)), encoding="utf-8")
    assert_verified(unit, user="/user/" in relative, tmp_path=tmp_path)


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_generated_units_pass_systemd_analyze_verify(user, tmp_path):
    unit = tmp_path / "dropsited.service"
    unit.write_text(render("systemd", spec_for(tmp_path), user=user), encoding="utf-8")
    assert_verified(unit, user=user, tmp_path=tmp_path)


def test_verify_does_reject_a_broken_unit(tmp_path):
    """Guards the two tests above: verify must really be checking."""
    unit = tmp_path / "dropsited.service"
    text = render("systemd", spec_for(tmp_path, program=("/nonexistent/dropsited",)), user=True)
    unit.write_text(text, encoding="utf-8")
    assert systemd_verify(unit, user=True, tmp_path=tmp_path).returncode != 0


def unit_settings(text: str) -> dict[str, str]:
    """`Key=value` lines of a unit, later keys winning (comments skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return dict(pairs)


def test_system_unit_settings():
    settings = unit_settings(render("systemd", PLACEHOLDER_SPEC, user=False))
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["KillMode"] == "mixed"
    assert settings["Restart"] == "on-failure"
    assert float(settings["RestartSec"]) > 0
    assert float(settings["WatchdogSec"]) > 0
    assert float(settings["TimeoutStopSec"]) > DEFAULT_DRAIN_GRACE
    assert settings["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/opt/dropsited/workspace"
    for key in ("NoNewPrivileges", "PrivateTmp", "RestrictSUIDSGID", "LockPersonality"):
        assert settings[key] == "yes"
    # Agents need the network and arbitrary system calls.
    for key in ("RestrictAddressFamilies", "IPAddressDeny", "PrivateNetwork", "SystemCallFilter"):
        assert key not in settings
    assert "MemoryDenyWriteExecute" not in settings  # would break node's JIT


def test_exec_start_quotes_spaces_percent_and_dollar(tmp_path):
    spec = spec_for(tmp_path, manifest="/srv/a b/$HOME%n.yaml")
    settings = unit_settings(render("systemd", spec, user=True))
    assert settings["ExecStart"].startswith(f"{DROPSITED} up -c ")
    assert '"/srv/a b/$$HOME%%n.yaml"' in settings["ExecStart"]
    assert systemd_quote('say "hi"') == '"say \\"hi\\""'


def test_a_newline_cannot_reach_a_unit(tmp_path):
    with pytest.raises(ValueError, match="newline"):
        render("systemd", spec_for(tmp_path, manifest="/a\nExecStartPre=/bin/evil"), user=True)


def plist_of(text: str) -> dict:
    return plistlib.loads(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        render_shipped_file("launchd/org.dropsited.daemon.plist"),
        render(
            "launchd", ServiceSpec(**{**PLACEHOLDER_SPEC.__dict__, "manifest": "/a&b/<x>.yaml"})
        ),
    ],
    ids=["shipped", "escaped"],
)
def test_plist_parses_with_the_required_keys(text):
    plist = plist_of(text)
    assert plist["Label"] == "org.dropsited.daemon"
    assert plist["ProgramArguments"][1:3] == ["up", "-c"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ThrottleInterval"] > 0
    assert plist["ExitTimeOut"] > DEFAULT_DRAIN_GRACE
    assert plist["ProcessType"] in {"Standard", "Background", "Adaptive", "Interactive"}
    for key in ("WorkingDirectory", "StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("/")


def test_plist_keeps_awkward_paths_intact():
    spec = ServiceSpec(**{**PLACEHOLDER_SPEC.__dict__, "manifest": "/a&b/<x>.yaml"})
    assert plist_of(render("launchd", spec))["ProgramArguments"][3] == "/a&b/<x>.yaml"


@pytest.mark.skipif(shutil.which("plutil") is None, reason="plutil not found (macOS only)")
def test_plutil_lints_the_shipped_plist():
    path = REPO_ROOT / "launchd" / "org.dropsited.daemon.plist"
    subprocess.run(["plutil", "-lint", str(path)], check=True, timeout=30)


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found")
def test_ecosystem_config_loads_in_node():
    script = "console.log(JSON.stringify(require(process.argv[1])))"
    path = REPO_ROOT / "ecosystem.config.js"
    out = subprocess.run(
        ["node", "-e", script, str(path)], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    (app,) = json.loads(out)["apps"]
    assert app["interpreter"] == "none"
    assert app["script"] == "dropsited"
    assert app["args"] == ["up", "-c", "agents.yaml"]
    assert app["kill_timeout"] == STOP_TIMEOUT * 1000 > DEFAULT_DRAIN_GRACE * 1000
    assert app["autorestart"] is True
    assert app["restart_delay"] > 0
    assert app["treekill"] is False
    assert app["cwd"] == str(REPO_ROOT)
