"""``RunScope``'s cheap lookups for the per-task path: the same answers as looking up by the id's text.

``run_info`` remembers the last run id object it turned into text (a flow's tasks ask with their flow run's own
``UUID``) and takes text as it is; ``task_started`` takes the task run's id as text when the caller has it.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.instrument.scope import ObserveSpec, RunScope

IDS = [uuid.UUID(int=i + 1) for i in range(4)]


def _copy(run_id: uuid.UUID) -> uuid.UUID:
    """An equal id that is another object (what ``task_run.flow_run_id`` is next to ``flow_run.id``)."""
    return uuid.UUID(int=run_id.int)


LOOKUP = st.tuples(st.integers(0, len(IDS)), st.sampled_from(["same", "copy", "text"]))
"""Which id (``len(IDS)``: one never in scope) and how it is passed."""


@settings(max_examples=200, deadline=None)
@given(
    in_scope=st.sets(st.integers(0, len(IDS) - 1)),
    finished=st.sets(st.integers(0, len(IDS) - 1)),
    lookups=st.lists(LOOKUP, max_size=30),
)
def test_run_info_answers_as_by_text(in_scope: set[int], finished: set[int], lookups: list[tuple[int, str]]) -> None:
    scope = RunScope()
    ids = [*IDS, uuid.UUID(int=999)]
    for i in sorted(in_scope):
        scope.begin_flow_run(SimpleNamespace(name=f"f{i}"), SimpleNamespace(id=ids[i]), ObserveSpec(), observed=True)
    for i in sorted(finished & in_scope):
        scope.finish(str(ids[i]))
    expected = {str(ids[i]): f"f{i}" for i in in_scope}
    for i, how in lookups:
        run_id = ids[i] if how == "same" else _copy(ids[i]) if how == "copy" else str(ids[i])
        info = scope.run_info(run_id)
        assert (info.flow_name if info is not None else None) == expected.get(str(ids[i]))
        assert scope.in_scope(run_id) == (str(ids[i]) in expected)
    assert scope.run_info(None) is None


def test_task_started_with_its_id_text_is_the_same_note() -> None:
    scope = RunScope()
    flow_run = SimpleNamespace(id=IDS[0])
    scope.begin_flow_run(SimpleNamespace(name="f"), flow_run, ObserveSpec(), observed=True)
    task_run = SimpleNamespace(id=IDS[1], run_count=1)
    scope.task_started(task_run, str(IDS[0]), str(IDS[1]))
    implicit = scope.implicit_scope()
    assert implicit.task_run is task_run and implicit.info is scope.run_info(IDS[0])
    scope.task_finished(str(IDS[1]), str(IDS[0]), 1)  # ends it, as one started without the text
    assert scope.implicit_scope().task_run is None


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 50)), max_size=4), min_size=1, max_size=6),
    batches=st.integers(1, 3),
)
def test_tasks_finished_in_a_batch_count_as_one_at_a_time(rows: list[list[tuple[int, int]]], batches: int) -> None:
    """``tasks_finished`` (the batch's, under one lock) gives each task run, and its flow run, the rows one
    ``task_finished`` call per task run gives; ``task_stopped`` ends a task run's progress at once, before
    its rows are counted."""
    results = []
    for batched in (False, True):
        scope = RunScope()
        flow_run = SimpleNamespace(id=IDS[0])
        info, _ = scope.begin_flow_run(SimpleNamespace(name="f"), flow_run, ObserveSpec(), observed=True)
        ends = []
        for i, task_rows in enumerate(rows):
            task_run = SimpleNamespace(id=uuid.UUID(int=100 + i), run_count=1)
            scope.task_started(task_run, str(IDS[0]), str(task_run.id))
            for table, n in task_rows:
                scope.count_task_rows(task_run, str(IDS[0]), n, f"t{table}")
            ends.append((str(task_run.id), str(IDS[0]), 1))
        if batched:
            for task_run_id, flow_run_id, _ in ends:
                scope.task_stopped(task_run_id, flow_run_id)
            assert scope.implicit_scope().task_run is None  # none in progress, rows not yet counted
            assert info.rows == 0
            events_at_the_ends = info.row_events  # each end a row event as it happens, as task_finished's
            size = max(1, len(ends) // batches)
            counted = []
            for start in range(0, len(ends), size):
                counted += scope.tasks_finished(ends[start : start + size], stopped=True)
            assert info.row_events == events_at_the_ends  # counting them later is no new event
        else:
            counted = [scope.task_finished(*end) for end in ends]
        results.append((counted, info.rows, dict(info.rows_by_table), sorted(info.local_task_run_ids), info.row_events))
    assert results[0] == results[1]
    assert results[0][1] == sum(n for task_rows in rows for _, n in task_rows)
