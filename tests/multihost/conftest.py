"""Fixtures of the multi-host bed (bed.py): one bed per test session, cleaned between tests.

Tests that take `bed` or `fs` are skipped, with the precise reason, where the bed cannot
run (not root, no /dev/fuse, a package missing, glusterd or sshd failing to start): they
never pass without having run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil
import pytest

from .bed import FILESYSTEMS, HOSTS, Bed, BedUnavailable, preflight

FUSE_CLIENTS = ("glusterfs", "sshfs", "ssh", "juicefs", "rclone", "smbnetfs")  # the mounts' own processes survive a clean-up


@pytest.fixture(scope="session")
def bed() -> Iterator[Bed]:
    """The bed: a GlusterFS volume, an sshfs export and JuiceFS (plus the refused rclone
    and smbnetfs mounts) in alpha, beta, gamma and the observer, each host in its own namespaces; torn down at the end of the session."""
    reason = preflight()
    if reason:
        pytest.skip(f"multi-host bed: {reason}")
    try:
        made = Bed(hosts=HOSTS).start()
    except BedUnavailable as exc:
        pytest.skip(f"multi-host bed: {exc}")
    try:
        yield made
    finally:
        made.close()


# JuiceFS only under -m soak for the tests that take `fs`; the most telling ones (a burst
# over two hosts, a dead host's takeover, the same-id submit race) run it by default.
FS_PARAMS = [pytest.param(name, marks=pytest.mark.soak) if name == "juicefs" else name
             for name in FILESYSTEMS]


@pytest.fixture(params=FS_PARAMS)
def fs(request: pytest.FixtureRequest, bed: Bed) -> str:
    """Each shared filesystem of the bed in turn (skipped, saying why, if it did not mount)."""
    try:
        bed.require(request.param)
    except BedUnavailable as exc:
        pytest.skip(str(exc))
    return request.param


@pytest.fixture(autouse=True)
def clean_hosts(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each bed test: links up, host names back, and every process the test left in
    a host killed (daemons, agents, probes), so the next test starts from a quiet bed."""
    if "bed" not in request.fixturenames:
        yield
        return
    made: Bed = request.getfixturevalue("bed")
    before = set(map(id, made.processes))
    yield
    for proc in [p for p in made.processes if id(p) not in before]:
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        with contextlib.suppress(ValueError):
            made.processes.remove(proc)
    for name, host in made.hosts.items():
        with contextlib.suppress(Exception):
            made.restore(name)
        with contextlib.suppress(Exception):
            made.rename_host(name, name)
        kill_strays(host.init)


def kill_strays(init: int) -> None:
    """SIGKILL every process of a host's PID namespace but its pid 1 and its FUSE clients
    (a daemon's container goes with its `unshare`, which --kill-child ties it to)."""
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return
    victims = []
    for proc in psutil.process_iter(["name"]):
        if proc.pid == init or proc.info["name"] in FUSE_CLIENTS:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{proc.pid}/ns/pid") == ns:
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
