"""The start-up probe of a workspace's file system (issue 17, defect 6)."""

from __future__ import annotations

import os
from pathlib import Path

from dropsited import DropSite
from dropsited.protocol import fsprobe
from dropsited.protocol.mounts import Mount, mount_of


def test_a_local_file_system_passes_and_leaves_nothing(tmp_path: Path) -> None:
    ds = DropSite(tmp_path / "ws")
    assert fsprobe.probe(ds.store) == []
    assert os.listdir(tmp_path / "ws" / ".dropsited") == []


class ReplacingStore:
    """A store whose file system cannot refuse a rename onto a taken name."""

    def hard_links(self) -> bool:
        return False


def test_a_file_system_without_noreplace_or_links_is_reported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fsprobe, "renameat2_noreplace", lambda *a: False)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        problem = fsprobe._no_replace(ReplacingStore(), fd)
    finally:
        os.close(fd)
    assert problem and "neither RENAME_NOREPLACE nor hard links" in problem


def test_mounts_tell_network_file_systems_apart(tmp_path: Path) -> None:
    assert Mount("/mnt/g", "fuse.glusterfs").network and Mount("/n", "nfs4").network
    assert Mount("/s", "fuse.sshfs").network and Mount("/c", "cifs").network
    assert not Mount("/", "ext4").network and not Mount("/tmp", "tmpfs").network
    here = mount_of(tmp_path)
    assert here is not None and tmp_path.as_posix().startswith(here.point.rstrip("/") or "/")
