"""Which file system a workspace is on, and whether other hosts may share it.

On a network file system (NFS, SMB/CIFS, GlusterFS, CephFS, sshfs, any FUSE mount)
file-system events do not cross hosts, O_APPEND is not atomic across clients, unlink
is not an exclusive commit point (GlusterFS), and another host may hold claims. The
daemon and the store change how they work there (docs/HOSTS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Kernel file system types (mountinfo's field after "-") that other machines may share.
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "9p",
    "lustre", "gpfs", "beegfs", "ocfs2", "gfs2", "virtiofs", "davfs", "coda", "orangefs",
})


@dataclass(frozen=True)
class Mount:
    """The mount holding a path: its mount point and file system type."""

    point: str
    fstype: str

    @property
    def network(self) -> bool:
        """Shared with other hosts, or of unknown nature (every FUSE file system)."""
        base = self.fstype.split(".", 1)[0]
        return base in NETWORK_TYPES or base in ("fuse", "fuseblk")

    def describe(self) -> str:
        return f"{self.fstype} at {self.point}"


def mount_of(path: str | os.PathLike) -> Mount | None:
    """The mount that holds `path` (the longest mount point above its real path), from
    /proc/self/mountinfo; None where that is not readable (not Linux)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    best: Mount | None = None
    for line in lines:
        mount = _parse(line)
        if mount is None:
            continue
        inside = real == mount.point or real.startswith(mount.point.rstrip("/") + "/")
        if inside and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best


def _parse(line: str) -> Mount | None:
    """`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw` -> (/mnt2, ext3)."""
    left, sep, right = line.partition(" - ")
    fields, rest = left.split(), right.split()
    if not sep or len(fields) < 5 or not rest:
        return None
    return Mount(_unescape(fields[4]), rest[0])


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def on_network(path: str | os.PathLike) -> bool:
    mount = mount_of(path)
    return mount is not None and mount.network
