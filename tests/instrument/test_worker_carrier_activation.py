"""``WorkerCarrier.__setstate__`` sets synthobs up where it is unpickled in another process (another pid, or the
same pid on another host), never in the process that pickled it; it reads the host name at most once per process
(a system call, several times per task on Dask otherwise). ``prefect_runs.id_text`` is ``str`` of any run id,
however ids and objects repeat."""

from __future__ import annotations

import os
import pickle
import socket
import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_synthobs import _host
from prefect_synthobs.instrument import observe, prefect_runs
from prefect_synthobs.instrument.runtime import ObserveSpec


@pytest.fixture
def activations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    monkeypatch.setattr(observe.WorkerCarrier, "activate", lambda self: seen.append(self))
    return seen


def _unpickled(state: dict[str, Any]) -> observe.WorkerCarrier:
    carrier = observe.WorkerCarrier(ObserveSpec())
    blob = pickle.dumps(carrier)
    made: observe.WorkerCarrier = pickle.loads(blob)  # this process: no activation
    made.__setstate__({**made.__getstate__(), **state})
    return made


def test_unpickled_where_it_was_pickled_it_sets_nothing_up(activations: list[Any]) -> None:
    carrier = observe.WorkerCarrier(ObserveSpec())
    assert pickle.loads(pickle.dumps(carrier)).origin_pid == os.getpid()
    assert activations == []


def test_another_pid_sets_synthobs_up_without_reading_the_host_name(
    activations: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_call() -> str:
        raise AssertionError("the host name was read")

    monkeypatch.setattr(socket, "gethostname", no_call)
    made = _unpickled({"origin_pid": os.getpid() + 1})
    assert activations == [made]


def test_the_same_pid_on_another_host_sets_synthobs_up(activations: list[Any]) -> None:
    made = _unpickled({"origin_host": _host.host_name() + "-elsewhere"})
    assert activations == [made]


def test_the_host_name_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted() -> str:
        calls.append(1)
        return "node-7"

    _host.host_name.cache_clear()
    monkeypatch.setattr(socket, "gethostname", counted)
    try:
        assert [_host.host_name() for _ in range(5)] == ["node-7"] * 5
        assert calls == [1]
    finally:
        _host.host_name.cache_clear()


@given(st.lists(st.tuples(st.sampled_from(["new", "again", "copy", "text"]), st.integers(0, 5)), max_size=60))
def test_id_text_is_str_of_any_id_however_objects_repeat(steps: list[tuple[str, int]]) -> None:
    made: list[uuid.UUID] = [uuid.uuid4() for _ in range(6)]
    for action, i in steps:
        if action == "new":  # a fresh object (a worker unpickles each task's ids anew)
            made[i] = uuid.uuid4()
            value: Any = made[i]
        elif action == "again":  # the same object again (a task's start, then its end)
            value = made[i]
        elif action == "copy":  # an equal id in another object
            value = uuid.UUID(int=made[i].int)
        else:  # already text
            value = str(made[i])
        assert prefect_runs.id_text(value) == str(value)


def test_id_text_stays_right_past_what_it_remembers() -> None:
    ids = [uuid.uuid4() for _ in range(3 * prefect_runs._ID_TEXTS_KEPT)]
    assert [prefect_runs.id_text(i) for i in ids] == [str(i) for i in ids]
    assert [prefect_runs.id_text(i) for i in reversed(ids)] == [str(i) for i in reversed(ids)]
    assert len(prefect_runs._ID_TEXTS) <= prefect_runs._ID_TEXTS_KEPT


class _NoFields:
    model_fields: ClassVar[dict[str, Any]] = {}  # settings with nothing to carry


@given(
    st.lists(
        st.tuples(st.sampled_from(["refresh", "ship", "take"]), st.sampled_from(["run-a", "run-b", None])),
        max_size=40,
    )
)
def test_the_shipped_counts_span_a_runs_attempts_and_reset_for_another_run(steps: list[tuple[str, Any]]) -> None:
    """``take_shipped`` gives (this attempt's, every attempt's) tasks sent elsewhere: a ``refresh`` with the run's
    id again (a retry) keeps the earlier attempts' count; another run's id, or none, starts afresh."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    settings = _NoFields()
    run, this, before = None, 0, 0
    for action, run_id in steps:
        if action == "refresh":
            carrier.refresh(settings, None, run_id)
            before = before + this if run_id is not None and run_id == run else 0
            run, this = run_id, 0
        elif action == "ship":
            pickle.dumps(carrier)  # a task sent to another process
            this += 1
        else:
            assert carrier.take_shipped() == (this, this + before)
            run, this, before = None, 0, 0


def test_an_unpickled_carrier_counts_its_own_runs_afresh() -> None:
    """A worker that runs the observed flow itself (a subflow inside a task) refreshes its unpickled copy."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    carrier.refresh(_NoFields(), None, "run-a")
    pickle.dumps(carrier)
    copy = pickle.loads(pickle.dumps(carrier))
    assert copy.take_shipped() == (0, 0)
    copy.refresh(_NoFields(), None, "run-a")
    pickle.dumps(copy)
    assert copy.take_shipped() == (1, 1)
