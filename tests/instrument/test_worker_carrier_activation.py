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
        st.tuples(st.sampled_from(["refresh", "ship", "take"]), st.sampled_from(["run-a", "run-b", "run-c"])),
        max_size=50,
    )
)
def test_the_shipped_counts_are_exact_for_a_run_alone_and_never_too_low_for_runs_at_once(
    steps: list[tuple[str, str]],
) -> None:
    """Runs of one flow object in progress at once in one process (threads, ``asyncio.gather``) share its carrier.

    ``take_shipped(run)`` gives (this attempt's, every attempt's) tasks sent elsewhere. A run during which no
    task was sent while another run was in progress gets both exactly, retries included (a ``refresh`` with the
    run's id again keeps its earlier attempts' count). A run that shared a send with another gets ``None`` for
    its attempt (unknown: the flow's end then reads until the API settles), and a total never below its own:
    its end never skips reading back task runs it did send (before: another run's ``refresh`` or end reset the
    count, and a run that had sent tasks read nothing back)."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    settings = _NoFields()
    active: dict[str, dict[str, Any]] = {}  # the truth: what each run in progress sent
    sent = 0
    for action, run in steps:
        if action == "refresh":
            if run in active:  # a retry
                active[run]["before"] += active[run]["this"]
                active[run]["this"] = 0
            else:
                active[run] = {"this": 0, "before": 0, "shared": False}
            carrier.refresh(settings, f"tp-{run}", run)
        elif action == "ship" and run in active:
            if len(active) > 1:
                for each in active.values():
                    each["shared"] = True
            pickle.dumps(carrier)  # a task of ``run`` sent to another process
            active[run]["this"] += 1
            sent += 1
        elif action == "take" and run in active:
            truth = active.pop(run)
            this, by_any = carrier.take_shipped(run)
            if truth["shared"]:
                assert this is None and by_any >= max(truth["this"] + truth["before"], 1)
            else:
                assert (this, by_any) == (truth["this"], truth["this"] + truth["before"])
        elif action == "take":  # a run this carrier does not know: unknown once any task left, never skipped
            assert carrier.take_shipped(run) == ((None, 1) if sent else (0, 0))


def test_a_task_sent_while_several_runs_are_in_progress_carries_its_own_runs_trace() -> None:
    """With runs at once, a task joins the trace of the run whose thread sends it (no run known: no trace, not
    another run's); with one run, that run's; after its end, none; a copy unpickled and pickled again on its way,
    the one it brought."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    carrier.refresh(_NoFields(), "tp-a", "run-a")
    copy = pickle.loads(pickle.dumps(carrier))
    assert copy.traceparent == "tp-a"
    # a copy pickled again on the way (Dask's scheduler does, in the flow's process or its own) keeps it
    assert pickle.loads(pickle.dumps(copy)).traceparent == "tp-a"
    run_b = uuid.uuid4()
    carrier.refresh(_NoFields(), "tp-b", str(run_b))
    assert pickle.loads(pickle.dumps(carrier)).traceparent is None  # no run context here: whose is unknown

    class _Run:
        id = run_b

    from prefect.context import FlowRunContext

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlowRunContext, "get", classmethod(lambda cls: type("Ctx", (), {"flow_run": _Run})()))
        assert pickle.loads(pickle.dumps(carrier)).traceparent == "tp-b"
    carrier.take_shipped(str(run_b))
    assert pickle.loads(pickle.dumps(carrier)).traceparent == "tp-a"
    carrier.take_shipped("run-a")
    assert pickle.loads(pickle.dumps(carrier)).traceparent is None


def test_an_unpickled_carrier_counts_its_own_runs_afresh() -> None:
    """A worker that runs the observed flow itself (a subflow inside a task) refreshes its unpickled copy."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    carrier.refresh(_NoFields(), None, "run-a")
    pickle.dumps(carrier)
    copy = pickle.loads(pickle.dumps(carrier))
    assert copy.take_shipped("run-a") == (0, 0)
    copy.refresh(_NoFields(), None, "run-a")
    pickle.dumps(copy)
    assert copy.take_shipped("run-a") == (1, 1)
    assert carrier.take_shipped("run-a") == (2, 2)


def test_a_run_that_ended_without_its_end_hook_is_forgotten() -> None:
    """A run whose end hook never ran (``with_options(on_failure=[...])`` replaced it; suspended) is over once its
    span ended in a final state (``run_ended``, from the run listener): the next run alone counts exactly and
    keeps its trace. A run whose end hook does come after its span's end still finds its own count."""
    carrier = observe.WorkerCarrier(ObserveSpec())
    carrier.refresh(_NoFields(), "tp-lost", "lost")
    pickle.dumps(carrier)
    carrier.run_ended("lost")  # no end hook comes
    carrier.refresh(_NoFields(), "tp-later", "later")
    assert pickle.loads(pickle.dumps(carrier)).traceparent == "tp-later"
    carrier.run_ended("later")  # its span ends; then its end hook
    assert carrier.take_shipped("later") == (1, 1)
    # one still in progress when the next one sends is forgotten then, as soon as it ended
    carrier.refresh(_NoFields(), "tp-1", "first")
    carrier.refresh(_NoFields(), "tp-2", "second")
    carrier.run_ended("first")
    assert pickle.loads(pickle.dumps(carrier)).traceparent == "tp-2"
    assert carrier.take_shipped("second") == (1, 1)
    carrier.run_ended("never-refreshed")  # nothing to do


def test_a_run_dropped_past_the_bound_is_read_back_not_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "_RUNS_KEPT", 2)
    carrier = observe.WorkerCarrier(ObserveSpec())
    for run in ("run-0", "run-1", "run-2"):
        carrier.refresh(_NoFields(), None, run)
        pickle.dumps(carrier)
    assert carrier.take_shipped("run-0") == (None, 1)  # dropped: unknown, its end still reads back


def test_a_task_without_a_known_trace_leaves_no_earlier_runs_span_current() -> None:
    """A worker thread keeps what an earlier task made current: a task whose run cannot be told clears it (its
    span starts a trace of its own), not joins the other run's trace."""
    from opentelemetry import context, trace

    token = context.attach(context.Context())
    try:
        known = observe.WorkerCarrier(ObserveSpec())
        known.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        known.enter_flow_trace()
        assert format(trace.get_current_span().get_span_context().trace_id, "032x") == (
            "0af7651916cd43dd8448eb211c80319c"
        )
        observe.WorkerCarrier(ObserveSpec()).enter_flow_trace()  # no traceparent
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        context.detach(token)


def test_a_run_context_that_cannot_be_read_never_fails_a_tasks_send(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.context import FlowRunContext

    carrier = observe.WorkerCarrier(ObserveSpec())
    carrier.refresh(_NoFields(), "tp-a", "run-a")
    carrier.refresh(_NoFields(), "tp-b", "run-b")

    def broken(cls: Any) -> Any:
        raise RuntimeError("no context")

    monkeypatch.setattr(FlowRunContext, "get", classmethod(broken))
    assert pickle.loads(pickle.dumps(carrier)).traceparent is None
