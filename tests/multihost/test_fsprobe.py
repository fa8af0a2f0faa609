"""Issue 17 defect 6: the start-up probe of the workspace's file system, on the bed's
real shared file systems (both supported: the probe must find nothing wrong), and the
shared-file-system rules the daemon then applies (polling, a rename as commit point)."""

from __future__ import annotations

import json

from .bed import Bed

COVERS = {
    "test_the_probe_passes_on_the_supported_shared_file_systems[gluster]": "defect 6; passes",
    "test_the_probe_passes_on_the_supported_shared_file_systems[sshfs]": "defect 6; passes",
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


def test_the_probe_passes_on_the_supported_shared_file_systems(bed: Bed, fs: str) -> None:
    ws = bed.workspace(fs, "probe")
    out = json.loads(bed.python("alpha", PROBE, ws.path).stdout)
    assert out["problems"] == [], out
    assert out["shared"] is True and out["fstype"].startswith("fuse"), out
