"""Agent logs in real files: bounded rotation, pumping a real child, tail and follow."""

import selectors
import subprocess
import sys
import threading
import time

import pytest

from dropsited.daemon.agents.agent_log import RotatingLog, follow, pump, pump_once, tail


def log_files(path):
    return sorted(path.parent.glob(path.name + "*"))


def read_all(path, backups):
    """Oldest to newest: .N ... .1, then the live file."""
    parts = [path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)] + [path]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def test_rotation_keeps_every_file_bounded_and_the_newest_bytes(tmp_path):
    path = tmp_path / "agent.log"
    stream = bytes(range(256)) * 8  # 2048 bytes, each position recognisable
    with RotatingLog(path, max_bytes=100, backups=3) as log:
        pos = 0
        for size in [7, 250, 1, 93, 500, 99, 100, 998]:  # includes chunks > max_bytes
            log.write(stream[pos:pos + size])
            pos += size
    assert pos == len(stream)
    files = log_files(path)
    assert [f.name for f in files] == ["agent.log", "agent.log.1", "agent.log.2", "agent.log.3"]
    assert all(f.stat().st_size <= 100 for f in files)
    kept = read_all(path, 3)
    assert stream.endswith(kept) and len(kept) > 300


def test_no_backups_means_one_bounded_file(tmp_path):
    path = tmp_path / "agent.log"
    with RotatingLog(path, max_bytes=50, backups=0) as log:
        for _ in range(20):
            log.write(b"x" * 13)
    assert [f.name for f in log_files(path)] == ["agent.log"]
    assert path.stat().st_size <= 50


def test_reopening_counts_the_existing_size(tmp_path):
    path = tmp_path / "agent.log"
    path.write_bytes(b"a" * 90)
    with RotatingLog(path, max_bytes=100, backups=1) as log:
        log.write(b"b" * 20)
    assert path.with_name("agent.log.1").read_bytes() == b"a" * 90
    assert path.read_bytes() == b"b" * 20  # rotated before, rather than split


def test_rejects_nonsense_limits(tmp_path):
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "a.log", max_bytes=0, backups=1)


def test_pump_copies_a_real_childs_output(tmp_path):
    path = tmp_path / "agent.log"
    code = "import sys\nfor i in range(2000): print(f'line {i}')\nsys.stdout.flush()"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    with RotatingLog(path, max_bytes=1 << 20, backups=1) as log:
        copied = pump(child.stdout, log)
    child.wait(5)
    child.stdout.close()
    expected = "".join(f"line {i}\n" for i in range(2000)).encode()
    assert copied == len(expected)
    assert path.read_bytes() == expected


def test_pump_once_from_a_selector_loop(tmp_path):
    path = tmp_path / "agent.log"
    child = subprocess.Popen(["bash", "-c", "echo out; echo err >&2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ)
    sel.register(child.stderr, selectors.EVENT_READ)
    with RotatingLog(path, max_bytes=1000, backups=1) as log:
        deadline = time.monotonic() + 5
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.1):
                if not pump_once(key.fileobj, log):
                    sel.unregister(key.fileobj)
    sel.close()
    child.wait(5)
    child.stdout.close()
    child.stderr.close()
    assert sorted(path.read_bytes().splitlines()) == [b"err", b"out"]


def test_tail_reaches_into_backups(tmp_path):
    path = tmp_path / "agent.log"
    with RotatingLog(path, max_bytes=30, backups=5) as log:
        for i in range(20):
            log.write(f"line {i:02d}\n".encode())  # 8 bytes: 3 whole lines fit a file
    assert tail(path, 2) == [b"line 18\n", b"line 19\n"]
    assert tail(path, 7) == [f"line {i:02d}\n".encode() for i in range(13, 20)]
    assert tail(path, 0) == []


def test_tail_joins_a_line_cut_by_rotation(tmp_path):
    path = tmp_path / "agent.log"
    with RotatingLog(path, max_bytes=10, backups=3) as log:
        log.write(b"first\nsec")
        log.write(b"ond\n")  # does not fit: rotates, leaving "sec" in .1
    assert tail(path, 1) == [b"second\n"]
    assert tail(path, 5) == [b"first\n", b"second\n"]


def test_whole_lines_are_not_split_across_files(tmp_path):
    path = tmp_path / "agent.log"
    with RotatingLog(path, max_bytes=30, backups=9) as log:
        for i in range(20):
            log.write(f"line {i:02d}\n".encode())
    for f in log_files(path):
        assert f.read_bytes().endswith(b"\n")
        assert len(f.read_bytes()) == (16 if f == path else 24)  # 3 lines of 8 bytes


def test_tail_of_missing_file_is_empty(tmp_path):
    assert tail(tmp_path / "none.log", 5) == []


def test_follow_across_rotations(tmp_path):
    path = tmp_path / "agent.log"
    log = RotatingLog(path, max_bytes=40, backups=2)
    log.write(b"old content not shown\n")  # before following: skipped (from_end)
    got: list[bytes] = []
    done = threading.Event()
    started = threading.Event()

    def reader():
        gen = follow(path, poll_interval=0.005, stop=done.is_set)
        started.set()
        got.extend(gen)

    # Start the generator and give it time to open and seek to the end.
    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(5)
    time.sleep(0.1)
    expected = b""
    for i in range(30):  # 30 * 10 bytes through 40-byte files: several rotations
        line = f"msg {i:04d}\n".encode()
        log.write(line)
        expected += line
        time.sleep(0.003)
    deadline = time.monotonic() + 5
    while b"".join(got) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join(5)
    log.close()
    assert b"".join(got) == expected


def test_slow_follower_passed_by_rotations_loses_nothing(tmp_path):
    path = tmp_path / "agent.log"
    log = RotatingLog(path, max_bytes=20, backups=5)
    log.write(b"line 0\n")
    gen = follow(path, from_end=False, poll_interval=0.005, stop=lambda: True)
    assert next(gen) == b"line 0\n"  # now holding the first file open
    for i in range(1, 9):  # 3 lines of 7 bytes per file: rotates twice meanwhile
        log.write(f"line {i}\n".encode())
    log.close()
    assert b"".join(gen) == b"".join(f"line {i}\n".encode() for i in range(1, 9))


def test_follow_waits_for_the_file_to_appear(tmp_path):
    path = tmp_path / "later.log"
    deadline = time.monotonic() + 5
    gen = follow(path, poll_interval=0.005, stop=lambda: time.monotonic() > deadline)
    threading.Timer(0.05, lambda: path.write_bytes(b"hello\n")).start()
    assert next(gen) == b"hello\n"
    gen.close()
