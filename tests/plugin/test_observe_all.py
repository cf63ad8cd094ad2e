"""``observe_all`` in-process: ``configure(observe_all=...)`` on and off, decorated and undecorated flows, subflows.

Against the session's real Prefect server; each test has its own store (``store_dir``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect import flow, task

import prefect_synthobs as so
from prefect_synthobs.instrument import observe_all
from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION

pytestmark = pytest.mark.usefixtures("prefect_server")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@task
def leaf(i: int) -> int:
    return i + 1


def _plain_flow(name: str) -> Any:
    @flow(name=name)
    def plain(n: int = 2) -> int:
        return sum(leaf(i) for i in range(n))

    return plain


@pytest.fixture
def all_on(store_dir: Path) -> Iterator[Path]:
    so.configure(observe_all=True)
    yield store_dir
    so.configure(observe_all=False)


def _flow_rows(store: Path, flow_name: str | None = None) -> Any:
    if not (store / "flow_runs").exists():
        return []
    rows = so.HealthStore(str(store)).read("flow_runs")
    return rows if flow_name is None else rows[rows.flow_name == flow_name]


def test_an_undecorated_flow_is_recorded_with_its_tasks(all_on: Path) -> None:
    name = _name("plain")
    state = _plain_flow(name)(3, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    assert observe_all.enabled()
    rows = _flow_rows(all_on, name)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row.flow_run_id, row.kind, row.state_type) == (run_id, "other", "COMPLETED")
    assert row.start_time is not None and row.duration_s >= 0
    tasks = so.HealthStore(str(all_on)).read("task_runs")
    assert sorted(tasks[tasks.flow_run_id == run_id].task_name.str.split("-").str[0]) == ["leaf"] * 3


def test_a_failed_undecorated_flow_is_recorded_failed(all_on: Path) -> None:
    name = _name("fails")

    @flow(name=name)
    def fails() -> None:
        raise RuntimeError("nope")

    fails(return_state=True)
    rows = _flow_rows(all_on, name)
    assert list(rows.state_type) == ["FAILED"]
    assert list(rows.error_type) == ["RuntimeError"]


@pytest.mark.parametrize("second_try_fails", [False, True])
def test_a_retried_undecorated_flow_is_recorded_with_its_final_state(all_on: Path, second_try_fails: bool) -> None:
    name = _name("retried")
    tries: list[int] = []

    @flow(name=name, retries=1, retry_delay_seconds=0)
    def flaky() -> int:
        tries.append(1)
        if len(tries) == 1 or second_try_fails:
            raise RuntimeError(f"try {len(tries)} fails")
        return leaf(1)

    state = flaky(return_state=True)
    assert len(tries) == 2 and state.is_failed() is second_try_fails
    rows = _flow_rows(all_on, name)
    rows = rows.sort_values("end_time") if len(rows) else rows
    assert len(rows) >= 1, "no row for the retried flow"
    last = rows.iloc[-1]  # the store's reading keeps the final row of a run
    assert str(last.flow_run_id) == str(state.state_details.flow_run_id)
    assert last.state_type == ("FAILED" if second_try_fails else "COMPLETED"), list(rows.state_type)
    assert list(rows.state_type) == [last.state_type]  # one row: nothing recorded as the first attempt failed
    if not second_try_fails:  # the second attempt's task run, recorded as the run stayed in scope
        tasks = so.HealthStore(str(all_on)).read("task_runs")
        mine = tasks[tasks.flow_run_id == str(last.flow_run_id)]
        assert list(mine.task_name.str.split("-").str[0]) == ["leaf"]
        again = flaky(return_state=True)  # the same Flow, now holding synthobs' end hook: one row, as before
        assert again.is_completed()
        rows = _flow_rows(all_on, name)
        assert sorted(map(str, rows.flow_run_id)) == sorted(
            map(str, [state.state_details.flow_run_id, again.state_details.flow_run_id])
        )
        assert list(rows.state_type) == ["COMPLETED", "COMPLETED"]


def test_a_decorated_flow_keeps_its_arguments_and_is_recorded_once(all_on: Path) -> None:
    name = _name("decorated")

    @so.observe(kind="generation", model_type="copula", table="customers")
    @flow(name=name)
    def decorated() -> int:
        so.record_rows(7)
        return leaf(1)

    decorated()
    rows = _flow_rows(all_on, name)
    assert len(rows) == 1
    assert (rows.iloc[0].kind, rows.iloc[0].model_type, rows.iloc[0].table_name, rows.iloc[0].rows) == (
        "generation",
        "copula",
        "customers",
        7,
    )


def test_off_records_nothing_new_and_on_again_records(store_dir: Path) -> None:
    first, second, third = _name("off"), _name("on"), _name("off-again")
    so.configure(observe_all=False)
    _plain_flow(first)()
    assert len(_flow_rows(store_dir, first)) == 0
    so.configure(observe_all=True)
    try:
        _plain_flow(second)()
        assert len(_flow_rows(store_dir, second)) == 1
    finally:
        so.configure(observe_all=False)
    assert not observe_all.enabled()
    _plain_flow(third)()
    assert len(_flow_rows(store_dir, third)) == 0


def test_uninstall_stops_it_and_install_brings_it_back(all_on: Path) -> None:
    gone, back = _name("uninstalled"), _name("reinstalled")
    INSTRUMENTATION.uninstall()
    try:
        assert not observe_all.enabled()
        _plain_flow(gone)()
        assert len(_flow_rows(all_on, gone)) == 0
    finally:
        INSTRUMENTATION.install()
    assert observe_all.enabled()
    _plain_flow(back)()
    assert len(_flow_rows(all_on, back)) == 1


# -- nested subflows: each run recorded exactly once, decorated or not ----------------------------------------

KINDS = st.sampled_from([None, "training", "generation", "quality", "other"])
"""``None``: undecorated."""

Tree = tuple[str | None, list[Any]]
TREES: st.SearchStrategy[Tree] = st.recursive(
    st.tuples(KINDS, st.just([])),
    lambda children: st.tuples(KINDS, st.lists(children, min_size=1, max_size=2)),
    max_leaves=4,
)


def _build(tree: Tree, expected: list[tuple[str, str, str | None]], parent: str | None = None) -> Any:
    """Flows for ``tree`` (each calls its children, then one task); ``expected``: (name, kind, parent name)."""
    kind, children = tree
    name = _name("node")
    expected.append((name, kind or "other", parent))
    subflows = [_build(child, expected, name) for child in children]

    @flow(name=name)
    def node() -> int:
        return sum(sub() for sub in subflows) + leaf(0)

    return so.observe(kind=kind)(node) if kind is not None else node


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=TREES)
def test_random_nested_subflows_are_each_recorded_once(store_dir: Path, tree: Tree) -> None:
    store = store_dir.parent / f"store-{uuid.uuid4().hex[:8]}"
    so.configure(store_url=str(store), observe_all=True)
    try:
        expected: list[tuple[str, str, str | None]] = []
        _build(tree, expected)()
    finally:
        so.configure(observe_all=False)
    rows = _flow_rows(store)
    assert sorted(rows.flow_name) == sorted(name for name, _, _ in expected)  # each run once, none twice
    by_name = rows.set_index("flow_name")
    for name, kind, parent in expected:
        assert by_name.at[name, "kind"] == kind, name
        assert by_name.at[name, "state_type"] == "COMPLETED"
        if parent is None:
            assert pd.isna(by_name.at[name, "parent_flow_run_id"])
        else:
            assert by_name.at[name, "parent_flow_run_id"] == by_name.at[parent, "flow_run_id"], name
    tasks = so.HealthStore(str(store)).read("task_runs")
    assert sorted(tasks.flow_run_id) == sorted(rows.flow_run_id)  # one leaf task per flow run, in its own flow


def test_an_undecorated_async_flow_is_recorded(all_on: Path) -> None:
    import asyncio

    name = _name("async")

    @task
    async def aleaf(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    @flow(name=name)
    async def aplain(n: int) -> int:
        return sum(await asyncio.gather(*[aleaf(i) for i in range(n)]))

    state = asyncio.run(aplain(3, return_state=True))
    run_id = str(state.state_details.flow_run_id)
    rows = _flow_rows(all_on, name)
    assert list(rows.flow_run_id) == [run_id] and list(rows.state_type) == ["COMPLETED"]
    tasks = so.HealthStore(str(all_on)).read("task_runs")
    assert len(tasks[tasks.flow_run_id == run_id]) == 3
