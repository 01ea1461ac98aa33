"""The session's typed stores (``ui.stores``): what they keep, and that each has one writer.

Pages share results only through these stores: only a store's owner writes it, and no module
but ``ui/stores.py`` names a store's ``st.session_state`` key.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import stores

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").rglob("*.py")])
WRITES = {"put", "setdefault", "set", "pop"}
STORES = {name: store for name, store in vars(stores).items() if isinstance(store, (stores.SessionStore, stores.SessionValue))}


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def store_named(node: ast.AST) -> str | None:
    """``NAME`` where the node is ``stores.NAME``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "stores":
        return node.attr if node.attr in STORES else None
    return None


def store_calls(path: Path) -> list[tuple[str, str, int]]:
    """(store, method, line) of every call on a store in the file: ``stores.NAME.put(...)``, or
    ``runs.put(...)`` after ``runs = stores.NAME``."""
    tree = ast.parse(path.read_text())
    aliases = {target.id: name for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and (name := store_named(node.value)) for target in node.targets if isinstance(target, ast.Name)}
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            name = store_named(receiver) or (aliases.get(receiver.id) if isinstance(receiver, ast.Name) else None)
            if name:
                calls.append((name, node.func.attr, node.lineno))
    return calls


def session_state_keys(path: Path) -> list[tuple[str, int]]:
    """String keys the file reads or writes in ``st.session_state`` directly."""
    def is_session_state(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "session_state"

    keys = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and is_session_state(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_session_state(node.func.value):
            key = node.args[0] if node.args else None
        elif isinstance(node, ast.Compare) and any(is_session_state(c) for c in node.comparators):
            key = node.left
        else:
            continue
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.append((key.value, node.lineno))
    return keys


def test_every_store_has_its_own_session_state_name_and_an_owner_that_exists():
    names = [store.name for store in STORES.values()]
    assert len(names) == len(set(names))
    assert set(STORES.values()) == set(stores.ALL)
    for store in STORES.values():
        assert (ROOT / store.owner).is_file(), f"{store.name}: owner {store.owner} does not exist"


@pytest.mark.parametrize("path", DASHBOARD, ids=relative)
def test_only_a_stores_owner_writes_it(path):
    for store, method, line in store_calls(path):
        if method in WRITES:
            assert relative(path) == STORES[store].owner, (
                f"{relative(path)}:{line} writes stores.{store}, owned by {STORES[store].owner}")


@pytest.mark.parametrize("path", [path for path in DASHBOARD if relative(path) != "ui/stores.py"], ids=relative)
def test_no_module_reaches_a_store_through_its_session_state_key(path):
    names = {store.name for store in STORES.values()}
    assert [(key, line) for key, line in session_state_keys(path) if key in names] == []


# --- behaviour, inside a script run --------------------------------------------------------------


def keeps_runs_across_reruns() -> None:
    import streamlit as st

    from ui import stores

    store = stores.SessionStore("test_runs", owner="tests/ui/test_stores.py")
    runs = st.session_state.setdefault("run_count", 0)
    st.session_state["run_count"] = runs + 1
    st.session_state["before"] = ("a" in store, store.get("a"), store.get("a", -1), store.items())
    if runs == 0:
        store.put("a", 1)
        st.session_state["cache_same"] = store.setdefault("b", {}) is store.setdefault("b", {"other": 1})


def test_a_store_keeps_its_entries_for_the_next_run_and_creates_nothing_on_read():
    app = AppTest.from_function(keeps_runs_across_reruns).run()
    assert app.session_state["before"] == (False, None, -1, [])
    assert app.session_state["cache_same"] is True
    app.run()
    assert app.session_state["before"] == (True, 1, 1, [("a", 1), ("b", {})])


def value_round_trip() -> None:
    import streamlit as st

    from ui import stores

    value = stores.SessionValue("test_value", owner="tests/ui/test_stores.py")
    st.session_state["seen"] = [value.is_set()]
    value.set(3)
    st.session_state["seen"] += [value.is_set(), value.get(), value.pop(), value.is_set(), value.pop()]


def test_a_session_value_is_set_read_and_popped_once():
    app = AppTest.from_function(value_round_trip).run()
    assert app.session_state["seen"] == [False, True, 3, 3, False, None]
