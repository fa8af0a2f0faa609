"""Property: for any inbox, the sequence claim_next hands out equals 0.1.0's
rule (filter by tags, skip other agents' tasks, sort by priority, created_at,
then id), whatever the index's internal state."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropsited import DropSite, TaskBuilder

task_specs = st.lists(
    st.tuples(
        st.integers(min_value=-2, max_value=4),                      # priority
        st.integers(min_value=0, max_value=5),                       # created_at second
        st.sampled_from([None, "me", "other"]),                      # assigned_to
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),      # tags
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=task_specs, wanted=st.sampled_from([None, ["a"], ["b", "c"]]),
       interleave=st.booleans())
def test_claim_sequence_follows_0_1_0_rule(specs, wanted, interleave) -> None:
    with tempfile.TemporaryDirectory() as root:
        ds = DropSite(root, durable=False)
        expected = []
        half = len(specs) // 2
        for n, (prio, sec, assigned, tags) in enumerate(specs):
            builder = TaskBuilder(f"t{n}", "me").priority(prio).tag(*tags)
            if assigned:
                builder = builder.assign(assigned)
            task = builder.build()
            task.created_at = f"2026-01-01T00:00:0{sec}+00:00"
            if interleave and n == half:
                assert ds.claim_next("x", ["no-such-tag"]) is None  # index built half-way
            ds.submit(task)
            if assigned in (None, "me") and (not wanted or set(tags) & set(wanted)):
                expected.append((prio, task.created_at, task.id))
        got = []
        while (task := ds.claim_next("me", wanted)) is not None:
            got.append((task.priority, task.created_at, task.id))
            ds.complete(task, {})
        assert got == sorted(expected)
