"""The agent state table: every documented edge is allowed, everything else refused."""

from pathlib import Path

import pytest

from dropsited.daemon.supervision.states import (
    TRANSITIONS,
    AgentState,
    InvalidTransition,
    check_transition,
    is_allowed,
)

S = AgentState

ALLOWED = {
    (S.STOPPED, S.STARTING),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.BACKOFF),
    (S.STARTING, S.EXITED),
    (S.STARTING, S.FATAL),
    (S.STARTING, S.STOPPING),
    (S.RUNNING, S.BACKOFF),
    (S.RUNNING, S.EXITED),
    (S.RUNNING, S.FATAL),
    (S.RUNNING, S.STOPPING),
    (S.BACKOFF, S.STARTING),
    (S.BACKOFF, S.STOPPED),
    (S.STOPPING, S.STOPPED),
    (S.EXITED, S.STARTING),
    (S.EXITED, S.STOPPED),
    (S.FATAL, S.STARTING),
    (S.FATAL, S.STOPPED),
}


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(AgentState)


def test_table_is_exactly_the_documented_edges():
    table = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert table == ALLOWED


@pytest.mark.parametrize("old", list(AgentState))
@pytest.mark.parametrize("new", list(AgentState))
def test_check_transition(old, new):
    if (old, new) in ALLOWED:
        assert check_transition(old, new) is new
        assert is_allowed(old, new)
    else:
        with pytest.raises(InvalidTransition) as err:
            check_transition(old, new)
        assert err.value.old is old and err.value.new is new
        assert f"{old.name} -> {new.name}" in str(err.value)


def test_no_self_loops():
    for state in AgentState:
        assert not is_allowed(state, state)


def test_every_edge_is_commented_in_the_source():
    import dropsited.daemon.supervision.states as mod

    source = Path(mod.__file__).read_text()
    for old, new in ALLOWED:
        assert f"# {old.name} -> {new.name}" in source


def test_module_imports_only_enum():
    import ast

    import dropsited.daemon.supervision.states as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= {"enum", "__future__"}
