"""Issue 17 defect 6: the start-up probe of the workspace's file system, on the bed's
real shared file systems. On the supported ones (GlusterFS, sshfs, JuiceFS) it must find
nothing wrong; on the refused ones (an rclone mount over SFTP, Samba through smbnetfs)
`dropsited up` must stop at start with one line naming what failed, and `init`/`drop`
must fail with a one-line error, never a traceback (docs/HOSTS.md, 'Supported file
systems', has the table these tests measure)."""

from __future__ import annotations

import json
import os

import pytest

from .bed import REFUSED, Bed, Workspace, venv_python
from .extra_fs import RCLONE, SMBNETFS
from .helpers import need

COVERS = {
    "test_the_probe_passes_on_the_supported_shared_file_systems[gluster]": "defect 6; passes",
    "test_the_probe_passes_on_the_supported_shared_file_systems[sshfs]": "defect 6; passes",
    "test_the_probe_passes_on_the_supported_shared_file_systems[juicefs]": "defect 6; passes",
    "test_the_probe_names_what_a_refused_file_system_does_wrong[rclone]": "defect 6",
    "test_the_probe_names_what_a_refused_file_system_does_wrong[smbnetfs]": "defect 6",
    "test_up_is_refused_at_start_on_a_refused_file_system[rclone]": "defect 6",
    "test_up_is_refused_at_start_on_a_refused_file_system[smbnetfs]": "defect 6",
    "test_init_and_drop_fail_with_one_line_on_smbnetfs": "defect 6",
}

PROBE = r"""
import json, sys
from dropsited import DropSite
from dropsited.protocol.fsprobe import probe
from dropsited.protocol.mounts import mount_of
ds = DropSite(sys.argv[1], durable=False)
m = mount_of(sys.argv[1])
print(json.dumps({"problems": probe(ds.store), "shared": ds.store.shared,
                  "fstype": m.fstype if m else None}))
"""
DOCS = "docs/HOSTS.md, 'Supported file systems'"
# What each refused file system is refused for (the line's words, as measured).
REASON = {RCLONE: "rclone mount", SMBNETFS: "Input/output error"}


@pytest.mark.parametrize("fs_name", ["gluster", "sshfs", "juicefs"])
def test_the_probe_passes_on_the_supported_shared_file_systems(bed: Bed, fs_name: str) -> None:
    need(bed, fs_name)
    ws = bed.workspace(fs_name, "probe")
    out = json.loads(bed.python("alpha", PROBE, ws.path).stdout)
    assert out["problems"] == [], out
    assert out["shared"] is True and out["fstype"].startswith("fuse"), out


def server_side_workspace(bed: Bed, fs: str, name: str) -> Workspace:
    """A workspace made with `dropsited init` on the file server's own disk, as an
    administrator would: smbnetfs cannot create one (its chmod answers EIO), and on
    rclone a folder the observer made stays invisible to alpha for minutes."""
    need(bed, fs)
    from .extra_fs import server_folder, share_root
    folder = f"{name}-{os.urandom(3).hex()}"
    bed_side = server_folder(bed, fs, folder)
    done = bed.check("srv", [venv_python(), "-m", "dropsited", "init", bed_side])
    assert done.returncode == 0, done.stderr
    return Workspace(fs, os.path.join(share_root(bed, fs), folder), None)


@pytest.mark.parametrize("fs_name", REFUSED)
def test_the_probe_names_what_a_refused_file_system_does_wrong(bed: Bed, fs_name: str) -> None:
    ws = server_side_workspace(bed, fs_name, "probe")
    out = json.loads(bed.python("alpha", PROBE, ws.path).stdout)
    print(f"{fs_name}: {out}")
    assert out["problems"], f"the probe found nothing wrong on {fs_name}: {out}"
    assert all(DOCS in line and ws.path in line for line in out["problems"]), out
    assert any(REASON[fs_name] in line for line in out["problems"]), out


@pytest.mark.parametrize("fs_name", REFUSED)
def test_up_is_refused_at_start_on_a_refused_file_system(bed: Bed, fs_name: str) -> None:
    """`dropsited up` stops before serving: exit non-zero, an error line naming the
    workspace and what failed, no traceback."""
    ws = server_side_workspace(bed, fs_name, "up")
    manifest = bed.hosts["alpha"].dir / f"refused-{fs_name}.yaml"
    manifest.write_text(json.dumps({"workspace": ws.path,
                                    "agents": [{"name": "w", "command": "true"}]}))
    done = bed.check("alpha", [venv_python(), "-m", "dropsited", "up", "-c", str(manifest),
                               "--poll", "0.5"], ok=False, timeout=60)
    text = done.stdout + done.stderr
    print(f"{fs_name}: exit {done.returncode}: {done.stderr.strip()[-600:]}")
    assert done.returncode != 0, text
    assert "Traceback" not in text and "dropsited ready" not in text, text
    errors = [line for line in done.stderr.splitlines() if ws.path in line and
              REASON[fs_name] in line]
    assert errors, f"no error line naming {ws.path} and '{REASON[fs_name]}':\n{text}"
    if fs_name == RCLONE:  # refused by the probe, which names the docs section
        assert DOCS in errors[0], errors


def test_init_and_drop_fail_with_one_line_on_smbnetfs(bed: Bed) -> None:
    """Through smbnetfs a workspace cannot be created (chmod answers EIO) nor a task
    dropped into one made on the server: each command exits non-zero with one line."""
    need(bed, SMBNETFS)
    from .extra_fs import share_root
    fresh = os.path.join(share_root(bed, SMBNETFS), f"init-{os.urandom(3).hex()}")
    made = server_side_workspace(bed, SMBNETFS, "drop")
    for argv in (["init", fresh], ["drop", made.path, "--from", "t", "--title", "t"]):
        done = bed.check("alpha", [venv_python(), "-m", "dropsited", *argv], ok=False,
                         timeout=60)
        lines = done.stderr.strip().splitlines()
        print(f"smbnetfs: dropsited {argv[0]}: exit {done.returncode}: {lines}")
        assert done.returncode != 0, done.stdout
        assert len(lines) == 1 and "Input/output error" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
