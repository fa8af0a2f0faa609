"""The control request format (PROTOCOL.md §14): the total parser, the reader that
follows no link and trusts only st_uid, and DropSite.cancel_at_rest. No daemon here."""

from __future__ import annotations

import os

import pytest

from dropsited import DropSite, TaskBuilder
from dropsited.protocol import TaskNotFound, json_rules
from dropsited.protocol.control import (
    CONTROL,
    MAX_REQUEST_BYTES,
    ControlError,
    Requester,
    new_request,
    parse_request,
    read_request,
    request_id_of,
    send,
    withdraw,
)

RID = "0190abcdef"


def _raw(**fields) -> bytes:
    return json_rules.dumps({"dropsite_control": 1, "id": RID, **fields})


def test_a_request_written_by_the_client_parses_back():
    request = new_request("scale", agent="coder", count=3)
    user = Requester.of_uid(os.geteuid()).user
    again = parse_request(json_rules.dumps(request.to_record(user)), request.id)
    assert again == request
    assert again.what() == "scale coder 3"
    cancel = parse_request(_raw(verb="cancel", task="abc", requeue=True), RID)
    assert (cancel.task, cancel.requeue, cancel.what()) == ("abc", True, "cancel abc --requeue")


@pytest.mark.parametrize(("raw", "code", "field"), [
    (b"{oops", "malformed", "not JSON"),
    (b"[1]", "malformed", "JSON object"),
    (json_rules.dumps({"id": RID, "verb": "stop", "agent": "a"}), "malformed", "dropsite_control"),
    (_raw(id="other", verb="stop", agent="a"), "malformed", "id:"),
    (_raw(verb="reboot", agent="a"), "malformed", "verb:"),
    (_raw(verb="stop", agent="a", extra=1), "malformed", "extra: unknown field"),
    (_raw(verb="stop", agent="../x"), "unknown_agent", "agent:"),
    (_raw(verb="stop", agent="a", count=2), "malformed", "count: only scale"),
    (_raw(verb="scale", agent="a", count=0), "bad_count", "count:"),
    (_raw(verb="scale", agent="a", count=True), "bad_count", "count:"),
    (_raw(verb="scale", agent="a", count=10**9), "bad_count", "count:"),
    (_raw(verb="cancel", task="../../etc/passwd"), "bad_task", "task:"),
    (_raw(verb="cancel", task="abc", requeue="yes"), "malformed", "requeue:"),
    (_raw(verb="cancel", task="abc", agent="a"), "malformed", "agent: not a field"),
    (_raw(verb="stop", agent="a", host=5), "malformed", "host:"),
])
def test_every_bad_request_is_one_reason_naming_the_field(raw, code, field):
    with pytest.raises(ControlError) as caught:
        parse_request(raw, RID)
    assert caught.value.code == code
    assert field in str(caught.value) and "\n" not in str(caught.value)


def test_request_names():
    assert request_id_of("0190ab.json") == "0190ab"
    for name in ("0190ab.reply.json", ".0190ab.json~h~1~2.tmp", "a b.json", "x.txt",
                 "-x.json", "x" * 65 + ".json"):
        assert request_id_of(name) is None


def test_the_reader_trusts_st_uid_follows_no_link_and_bounds_size(tmp_path):
    ds = DropSite(tmp_path / "ws")
    request = new_request("stop", agent="coder")
    send(ds.store, request)
    raw, uid = read_request(ds.store, f"{request.id}.json")
    assert uid == os.geteuid() and parse_request(raw, request.id) == request
    control = tmp_path / "ws" / CONTROL
    (control / "link.json").symlink_to(control / f"{request.id}.json")
    with pytest.raises(ControlError, match="symbolic link"):
        read_request(ds.store, "link.json")
    (control / "big.json").write_bytes(b" " * (MAX_REQUEST_BYTES + 1))
    with pytest.raises(ControlError, match="over the"):
        read_request(ds.store, "big.json")
    os.mkfifo(control / "fifo.json")
    with pytest.raises(ControlError, match="not a regular file"):
        read_request(ds.store, "fifo.json")
    assert read_request(ds.store, "gone.json") is None
    assert withdraw(ds.store, request.id) is True and withdraw(ds.store, request.id) is False


def test_cancel_at_rest_moves_and_records_who(tmp_path):
    ds = DropSite(tmp_path / "ws", durable=False)
    waiting = ds.submit(TaskBuilder("t", "me").build())
    folder, task = ds.cancel_at_rest(waiting, "alice", uid=1000)
    assert folder == "failed" and ds.locate(waiting).folder == "failed"
    entry = ds.get_task(waiting).history[-1]
    assert entry["error"] == "cancelled by alice" and entry["by"] == "alice"
    assert entry["uid"] == 1000 and entry["cancelled"] is True
    with pytest.raises(TaskNotFound, match="in failed/"):
        ds.cancel_at_rest(waiting, "alice")
    again = ds.submit(TaskBuilder("t", "me").build())
    assert ds.cancel_at_rest(again, "bob", requeue=True)[0] == "inbox"  # already there
    assert ds.get_task(again).history[-1]["status"] == "inbox"
