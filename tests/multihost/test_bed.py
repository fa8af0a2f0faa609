"""The bed itself works: hosts are apart (names, networks, PIDs, boot ids) and share files.

Every test here passes on the current code: if one fails, the bed is broken, and the
defect tests of this folder prove nothing until it is fixed.
"""

from __future__ import annotations

import signal
import subprocess
import time

from .bed import BOOT_ID, HOSTS, REFUSED, SERVER_ADDR, Bed, Workspace
from .extra_fs import share_root
from .helpers import drop, dropper, host_setup, start, wait_until

CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], 22), timeout=2).close()\n"
           "    print('connected')\n"
           "except OSError as exc:\n"
           "    print('failed', exc)\n")


def test_set_up_takes_under_a_minute(bed: Bed) -> None:
    """(A filesystem that did not mount skips its own tests, with its reason.)"""
    print(f"bed set-up: {bed.setup_seconds}; filesystems: {bed.available}")
    assert bed.setup_seconds["total"] < 60, bed.setup_seconds


def test_each_host_has_its_own_name_network_and_boot_id(bed: Bed) -> None:
    names = {h: bed.check(h, ["hostname"]).stdout.strip() for h in HOSTS}
    assert names == {h: h for h in HOSTS}
    addrs = {h: bed.check(h, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout for h in HOSTS}
    assert len({a.split()[3] for a in addrs.values()}) == len(HOSTS), addrs
    boots = {h: bed.check(h, ["cat", BOOT_ID]).stdout.strip() for h in HOSTS}
    with open(BOOT_ID) as fh:
        mine = fh.read().strip()
    assert len(set(boots.values())) == len(HOSTS) and mine not in boots.values(), boots
    # Nothing of the bed is in the root network namespace.
    root = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    assert SERVER_ADDR.rsplit(".", 1)[0] + "." not in root


def test_pid_namespaces_let_two_hosts_share_pid_1(bed: Bed) -> None:
    own = {h: bed.check(h, ["sh", "-c", "echo $$"], pid_namespace=True).stdout.strip()
           for h in ("alpha", "beta")}
    assert own == {"alpha": "1", "beta": "1"}
    # A host sees only its own processes: beta's sleeper is not in alpha's /proc.
    sleeper = bed.run("beta", ["sleep", "31.5"])
    try:
        pid = sleeper.pid_in_host()
        listing = bed.check("alpha", ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"])
        assert "sleep 31.5" not in listing.stdout
        assert bed.check("beta", ["cat", f"/proc/{pid}/cmdline"]).stdout.startswith("sleep")
    finally:
        sleeper.kill()
        sleeper.wait(5)


def test_boot_id_can_change_and_reaches_containers(bed: Bed) -> None:
    new = bed.set_boot_id("gamma")
    assert bed.check("gamma", ["cat", BOOT_ID]).stdout.strip() == new
    assert bed.check("gamma", ["cat", BOOT_ID], pid_namespace=True).stdout.strip() == new
    with open(BOOT_ID) as fh:
        assert fh.read().strip() != new


def test_files_written_on_one_host_are_seen_on_the_others(bed: Bed, fs: str) -> None:
    ws = bed.workspace(fs, "smoke")
    bed.check("alpha", ["sh", "-c", f"echo from-alpha > {ws.path}/note"])
    for host in ("beta", "gamma"):
        assert bed.check(host, ["cat", f"{ws.path}/note"]).stdout == "from-alpha\n"
    bed.check("beta", ["mv", f"{ws.path}/note", f"{ws.path}/moved"])
    out = bed.check("alpha", ["ls", ws.path]).stdout.split()
    assert out == ["moved"]
    assert (ws.view / "moved").read_text() == "from-alpha\n"


def test_cut_link_partitions_one_host_and_restore_heals_it(bed: Bed) -> None:
    def reach(host: str) -> str:
        return bed.python(host, CONNECT, SERVER_ADDR).stdout.strip()

    bed.cut("alpha")
    try:
        assert reach("alpha").startswith("failed")
        assert reach("beta") == "connected"
    finally:
        bed.restore("alpha")
    assert reach("alpha") == "connected"


def test_a_daemon_runs_tasks_in_a_host(bed: Bed, fs: str) -> None:
    ws = bed.workspace(fs, "daemon")
    setup = host_setup(bed, "alpha", ws)
    daemon = start(bed, setup)
    assert daemon.pid_in_host() == 1  # a container's entry point
    ds = dropper(ws)
    task_id = drop(ds)
    done = wait_until(lambda: ds.get_task(task_id) if (ws.view / "done" / f"{task_id}.json").exists()
                      else None, 15, f"{task_id} in done/")
    assert done.result == {"host": "alpha"}
    assert daemon.stop() == 0


def test_reboot_gives_a_new_boot_id_and_keeps_the_mounts(bed: Bed) -> None:
    old_boot, old_init = bed.boot_id("gamma"), bed.hosts["gamma"].init
    sleeper = bed.run("gamma", ["sleep", "60"])
    new_boot = bed.reboot("gamma")
    assert new_boot != old_boot and bed.hosts["gamma"].init != old_init
    assert sleeper.wait(10) == -signal.SIGKILL
    assert bed.check("gamma", ["cat", BOOT_ID]).stdout.strip() == new_boot
    for fs in bed.hosts["gamma"].mounted:
        if fs in REFUSED:  # rclone's directory cache would hide the observer's new folder
            assert bed.check("gamma", ["ls", "-a", share_root(bed, fs)]).returncode == 0
            continue
        ws: Workspace = bed.workspace(fs, "reboot")
        t0 = time.monotonic()
        assert bed.check("gamma", ["ls", "-a", ws.path]).returncode == 0
        assert time.monotonic() - t0 < 10
