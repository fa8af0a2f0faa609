"""A corpus of 200+ malformed inbox files, dropped into a running daemon with good tasks.

The daemon must not crash or stall; every good task is done; every bad file ends in
quarantine/ with a `.reason` (or, for names that are not task file names such as
dot-files, is left alone); a file a slow writer is still writing is not touched until
it is complete; nothing outside the workspace is read through a link, written or moved.
The daemon runs with `--corrupt-grace 1` so the test need not wait the default 30 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

from harness import agent, py, wait_until

from dropsited.protocol import Task, TaskBuilder
from dropsited.protocol.errors import InvalidTask

GRACE = 1.0
WORKER = """
import json, sys
for line in sys.stdin:
    task = json.loads(line)
    print(json.dumps({"id": task["id"], "status": "done", "result": {"ok": True}}), flush=True)
"""
WRONG_VALUES = (None, 7, -1, 1.5, True, "text", "", [], ["x", 1], {}, {"a": [1]}, "1" * 40)
LIMIT = 4 * 1024 * 1024


def good_doc(title: str = "good") -> dict:
    return TaskBuilder(title, "corpus").build().to_dict()


def rejected(doc: dict) -> bool:
    try:
        Task.from_dict(doc)
    except InvalidTask:
        return True
    return False


def corpus(rng: random.Random) -> list[tuple[str, bytes]]:
    """(file name, content) pairs, every one of them not a task the daemon may run."""
    files: list[tuple[str, bytes]] = []

    def add(content: bytes, name: str | None = None) -> None:
        files.append((name or f"{good_doc()['id']}.json", content))

    valid = json.dumps(good_doc(), indent=2).encode()
    for cut in sorted(rng.sample(range(1, len(valid) - 1), 40)):
        add(valid[:cut])                                            # truncated JSON
    for key in good_doc():
        for value in WRONG_VALUES:                                  # each field, wrong type
            doc = good_doc()
            doc[key] = value
            if rejected(doc):
                add(json.dumps(doc).encode())
    for _ in range(15):
        add(rng.randbytes(rng.randint(1, 3000)))                    # binary
    add(b"")                                                        # empty
    add(b"   \n\t ")
    add(b"null")
    add(b"[]")
    add(b'"a string"')
    doc = good_doc()
    doc["description"] = "x" * (LIMIT + 10)                         # huge
    add(json.dumps(doc).encode())
    add(b"[" * 200_000 + b"]" * 200_000)                            # deeply nested
    doc = good_doc()
    deep = json.dumps(doc)[:-1] + ', "zz": ' + "[" * 100_000 + "]" * 100_000 + "}"
    add(deep.encode())
    for text in ("caf\xe9", "\xff\xfe", "ok\x80"):                  # not UTF-8
        add(json.dumps({**good_doc(), "title": "T"}).encode().replace(b'"T"', b'"' + text.encode("latin-1") + b'"'))
    add("\ufeff".encode() + valid)                                  # UTF-8 BOM
    add(valid.decode().encode("utf-16"))
    for odd in ("a b", "..", "...", "-rf", "ü", "x\ny", "$(touch x)", "%2e%2e%2fetc",
                "a" * 200, "con", "id;rm -rf", "*", "\\..\\..\\x"):   # odd names, valid content
        add(json.dumps(good_doc()).encode(), f"{odd}.json")
    for forged in ("../../outside/x", "/etc/passwd", "..", "a/b", ""):  # id not the file name
        add(json.dumps({**good_doc(), "id": forged}).encode())
    other = good_doc()
    add(json.dumps(other).encode(), f"{good_doc()['id']}.json")     # id of another file
    return files


def write_corpus(inbox: Path, files: list[tuple[str, bytes]]) -> None:
    for name, content in files:
        (inbox / name).write_bytes(content)


class SlowWriter(threading.Thread):
    """Writes `content` into inbox/<name> a few bytes at a time, like `cat > file` on a slow link."""

    def __init__(self, path: Path, content: bytes, seconds: float) -> None:
        super().__init__(daemon=True)
        self.path, self.content, self.seconds = path, content, seconds
        self.finished = threading.Event()

    def run(self) -> None:
        steps = 12
        size = -(-len(self.content) // steps)
        with open(self.path, "wb") as out:
            for i in range(steps):
                time.sleep(self.seconds / steps)
                out.write(self.content[i * size:(i + 1) * size])
                out.flush()
        self.finished.set()


def fingerprint(path: Path) -> tuple:
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_input_corpus(run_daemon, tmp_path: Path) -> None:
    rng = random.Random(2026)
    d = run_daemon([agent("w", py(WORKER), mode="worker", concurrency=2)],
                   "--corrupt-grace", str(GRACE), "--log-level", "info")
    inbox = d.ws / "inbox"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.json"  # a *valid* task: following the link would run it
    secret.write_text(json.dumps(good_doc("secret")))
    plain = outside / "notes.txt"
    plain.write_text("not yours\n")
    before = {p: fingerprint(p) for p in (secret, plain)}

    good = [d.drop(f"good {i}") for i in range(25)]
    files = corpus(rng)
    write_corpus(inbox, files)
    # Dot-files and other non-task names are bad input too: quarantined once they
    # have not changed for the grace period, like unparsable task files.
    quarantined_names = {name for name, _ in files}
    links = {}
    for target in (secret, plain, outside, Path("/etc/passwd")):
        name = f"{good_doc()['id']}.json"
        os.symlink(target, inbox / name)
        links[name] = target
    quarantined_names |= set(links)
    for _ in range(3):
        name = f"{good_doc()['id']}.json"
        os.mkfifo(inbox / name)
        quarantined_names.add(name)
    (inbox / "dir.json").mkdir()
    quarantined_names.add("dir.json")
    ignored = {".hidden.json": b"{", ".x.tmp": b"garbage", "notes.txt": b"hello",
               "x.json.part": json.dumps(good_doc()).encode()}
    for name, content in ignored.items():
        (inbox / name).write_bytes(content)
    quarantined_names |= set(ignored)
    # Slow writers: one valid task written over 4 x the grace (must be done, never
    # quarantined), one garbage file written just as slowly (quarantined only once it stops).
    slow_good = good_doc("slow")
    writers = [SlowWriter(inbox / f"{slow_good['id']}.json", json.dumps(slow_good).encode(), 4 * GRACE),
               SlowWriter(inbox / f"{good_doc()['id']}.json", b'{"title": "never closed", ', 4 * GRACE)]
    quarantined_names.add(writers[1].path.name)
    for writer in writers:
        writer.start()
    good += [d.drop(f"good after {i}") for i in range(25)]
    assert len(quarantined_names) >= 200, len(quarantined_names)

    while not writers[1].finished.is_set():   # while writing: never quarantined
        for writer in writers:
            assert not (d.ws / "quarantine" / writer.path.name).exists()
        time.sleep(0.05)
    for task_id in good + [slow_good["id"]]:
        d.wait_in(task_id, "done", timeout=30)

    def left_in_inbox() -> list[str]:
        return sorted(os.listdir(inbox))
    try:
        wait_until(lambda: not left_in_inbox(), 30, "bad files to leave inbox/")
    except AssertionError:
        raise AssertionError(f"still in inbox/: {left_in_inbox()}\n{d.stderr()[-3000:]}") from None
    assert d.proc.poll() is None, d.stderr()[-3000:]
    late = d.drop("after the corpus")
    d.wait_in(late, "done", timeout=10)  # not stalled

    reasons = {r["file"]: r for r in d.ds.quarantined()}
    missing = {n for n in quarantined_names if f"inbox/{n}" not in reasons}
    assert not missing, f"{len(missing)} bad files without a reason: {sorted(missing)[:5]}"
    assert all(r["error"] and "\n" not in r["error"] for r in reasons.values())
    for name, target in links.items():                    # the link moved, never its target
        moved = d.ws / "quarantine" / reasons[f"inbox/{name}"]["quarantined_as"]
        assert moved.is_symlink() and os.readlink(moved) == str(target)
    assert {p: fingerprint(p) for p in (secret, plain)} == before
    assert sorted(os.listdir(outside)) == ["notes.txt", "secret.json"]
    assert "Traceback" not in d.stderr()
    assert d.stop() == 0
