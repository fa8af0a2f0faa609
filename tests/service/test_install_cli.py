"""`dropsited service install/uninstall` through the real console script."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

DROPSITED = Path(sys.executable).parent / "dropsited"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed `dropsited` with a HOME in tmp, so nothing lands in the real one."""
    environ = {**os.environ, "HOME": str(cwd / "home"), **(env or {})}
    environ.pop("XDG_CONFIG_HOME", None)
    return subprocess.run(
        [str(DROPSITED), "service", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ,
        timeout=30,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a manifest and a workspace, the cwd of every command."""
    (tmp_path / "agents.yaml").write_text("workspace: ./workspace\nagents: []\n")
    (tmp_path / "workspace").mkdir()
    return tmp_path


def test_print_shows_the_file_and_writes_nothing(project):
    result = run("install", "--systemd", "--user", "--print", "-w", "workspace", cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"ExecStart={DROPSITED} up -c {project / 'agents.yaml'} -w {project / 'workspace'}" in (
        result.stdout
    )
    assert "Type=notify" in result.stdout
    assert not (project / "home").exists()


def test_install_systemd_user_writes_the_unit_and_prints_commands(project):
    dest = project / "units"
    result = run("install", "--systemd", "--user", "--dest", str(dest), cwd=project)
    assert result.returncode == 0, result.stderr
    unit = (dest / "dropsited.service").read_text()
    assert f"WorkingDirectory={project}" in unit
    assert f"ExecStart={DROPSITED} up -c {project / 'agents.yaml'}\n" in unit
    assert "systemctl --user daemon-reload && systemctl --user enable --now dropsited.service" in (
        result.stdout
    )


def test_install_defaults_to_the_users_systemd_folder(project):
    result = run("install", "--systemd", "--user", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "home/.config/systemd/user/dropsited.service").is_file()


def test_install_launchd_writes_a_plist_and_its_log_folder(project):
    dest = project / "agents-dir"
    result = run("install", "--launchd", "--dest", str(dest), cwd=project)
    assert result.returncode == 0, result.stderr
    path = dest / "org.dropsited.daemon.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["ProgramArguments"] == [str(DROPSITED), "up", "-c", str(project / "agents.yaml")]
    assert Path(plist["StandardOutPath"]).parent.is_dir()
    assert f"launchctl bootstrap gui/$(id -u) {path}" in result.stdout


def test_install_pm2_goes_beside_the_manifest(project):
    result = run("install", "--pm2", cwd=project)
    assert result.returncode == 0, result.stderr
    text = (project / "ecosystem.config.js").read_text()
    assert f'script: "{DROPSITED}"' in text
    assert f'cwd: "{project}"' in text
    assert "pm2 start ecosystem.config.js && pm2 save && pm2 startup" in result.stdout


def test_missing_manifest_is_a_one_line_error(tmp_path):
    result = run("install", "--systemd", "--user", "--print", "-c", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"dropsited service: manifest not found: {tmp_path / 'nope.yaml'}\n"


def test_unwritable_destination_is_a_one_line_error(project):
    blocker = project / "a-file"
    blocker.write_text("")
    result = run("install", "--systemd", "--dest", str(blocker / "sub"), cwd=project)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("dropsited service: cannot write ")


def test_a_foreign_file_is_never_overwritten_or_removed(project):
    (project / "ecosystem.config.js").write_text("module.exports = {apps: []};\n")
    for verb in ("install", "uninstall"):
        result = run(verb, "--pm2", cwd=project)
        assert result.returncode == 2
        assert "not written by dropsited" in result.stderr
    assert (project / "ecosystem.config.js").read_text() == "module.exports = {apps: []};\n"


def test_uninstall_removes_the_unit_and_its_enable_link(project):
    dest = project / "units"
    assert run("install", "--systemd", "--user", "--dest", str(dest), cwd=project).returncode == 0
    wants = dest / "default.target.wants"
    wants.mkdir()
    (wants / "dropsited.service").symlink_to(dest / "dropsited.service")
    result = run("uninstall", "--systemd", "--user", "--dest", str(dest), cwd=project)
    assert result.returncode == 0, result.stderr
    assert not (dest / "dropsited.service").exists()
    assert not (wants / "dropsited.service").is_symlink()
    assert "systemctl --user stop dropsited.service" in result.stdout
    again = run("uninstall", "--systemd", "--user", "--dest", str(dest), cwd=project)
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


@pytest.mark.parametrize("verb", ["install", "uninstall"])
def test_help_has_an_example(verb, tmp_path):
    result = run(verb, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Example:" in result.stdout


def test_two_platform_flags_are_refused(project):
    result = run("install", "--systemd", "--launchd", "--print", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dropsited service: choose one of --systemd, --launchd, --pm2 (got --launchd --systemd)"]
    assert result.stdout == ""
