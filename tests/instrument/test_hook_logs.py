"""Prefect's lines around synthobs' hooks are DEBUG records; lines around other hooks stay INFO.

The hooks run through Prefect's own engines (``FlowRunEngine.call_hooks``, ``SyncTaskRunEngine.call_hooks``:
the code that writes "Running hook ..." in a real run), with no API: stand-ins named as synthobs names its
hooks, beside a user's hook, so the test sees exactly the lines Prefect writes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect import flow, task
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.flow_engine import FlowRunEngine
from prefect.states import Completed, Running
from prefect.task_engine import SyncTaskRunEngine

import prefect_synthobs as so
from prefect_synthobs.instrument.hook_logs import (
    FLOW_FINISHED,
    FLOW_STARTED,
    HOOK_LOGGERS,
    HOOK_NAMES,
    TASK_FINISHED,
    QuietHookLines,
    hook_of,
    quiet_hook_lines,
)


def named(name: str, fail: bool = False) -> Callable[..., None]:
    def hook(*_args: Any, **_kwargs: Any) -> None:
        if fail:
            raise RuntimeError("boom")

    hook.__name__ = hook.__qualname__ = name
    return hook


def run_hooks(ours: Callable[..., None] | None = None) -> None:
    """A flow's Running and Completed hooks and a task's Completed hooks, through Prefect's engines."""
    quiet_hook_lines()

    @flow(name="hooked")
    def hooked() -> None: ...

    started = ours or named(FLOW_STARTED)
    f = hooked.with_options(on_running=[started, named("mine")], on_completion=[named(FLOW_FINISHED)])
    engine = FlowRunEngine(flow=f)
    engine.flow_run = FlowRun(flow_id=uuid.uuid4(), name="run")
    engine.call_hooks(Running())
    engine.call_hooks(Completed())

    @task
    def step() -> None: ...

    t = step.with_options(on_completion=[named(TASK_FINISHED), named("my_task_hook")])
    task_engine = SyncTaskRunEngine(task=t)
    task_engine.task_run = TaskRun(task_key="k", dynamic_key="0", name="step-0", flow_run_id=None)
    task_engine.call_hooks(Completed())


def hook_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "hook" in r.getMessage().lower()]


def test_prefect_lines_around_synthobs_hooks_are_hidden_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prefect")
    run_hooks()
    lines = [(r.levelname, r.getMessage()) for r in hook_records(caplog)]
    # the user's hooks: Prefect's two lines each, at INFO, as before
    assert lines == [
        ("INFO", "Running hook 'mine' in response to entering state 'Running'"),
        ("INFO", "Hook 'mine' finished running successfully"),
        ("INFO", "Running hook 'my_task_hook' in response to entering state 'Completed'"),
        ("INFO", "Hook 'my_task_hook' finished running successfully"),
    ]


def test_they_are_debug_records_where_debug_is_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prefect")
    run_hooks()
    ours = [r for r in hook_records(caplog) if "synthobs_" in r.getMessage()]
    # two lines per hook: started and finished of the flow, finished of the task
    assert sorted(hook_of(r.getMessage()) or "" for r in ours) == sorted(
        [FLOW_STARTED, FLOW_FINISHED, TASK_FINISHED] * 2
    )
    assert {(r.levelno, r.levelname) for r in ours} == {(logging.DEBUG, "DEBUG")}
    assert {r.name for r in ours} <= set(HOOK_LOGGERS)
    assert all(r.levelno == logging.INFO for r in hook_records(caplog) if "synthobs_" not in r.getMessage())


def test_a_failing_hook_still_says_so_at_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prefect")
    run_hooks(named(FLOW_STARTED, fail=True))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"An error was encountered while running hook '{FLOW_STARTED}'"]
    assert not [r for r in hook_records(caplog) if "synthobs_" in r.getMessage() and r.levelno < logging.ERROR]


def test_observe_names_its_hooks_so_and_installs_the_filter() -> None:
    for name in HOOK_LOGGERS:  # as in a fresh process
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, QuietHookLines)]:
            logger.removeFilter(f)

    @so.observe(kind="training")
    @flow
    def observed() -> None: ...

    @so.observe
    @task
    def observed_task() -> None: ...

    hooks = [
        *observed.on_running_hooks,
        *observed.on_completion_hooks,
        *observed.on_failure_hooks,
        *observed.on_crashed_hooks,
        *observed.on_cancellation_hooks,
        *observed_task.on_completion_hooks,
        *observed_task.on_failure_hooks,
    ]
    assert {getattr(h, "__name__", None) for h in hooks} == {FLOW_STARTED, FLOW_FINISHED, TASK_FINISHED} < HOOK_NAMES
    for name in HOOK_LOGGERS:
        assert sum(isinstance(f, QuietHookLines) for f in logging.getLogger(name).filters) == 1
    quiet_hook_lines()  # again: still one
    assert all(sum(isinstance(f, QuietHookLines) for f in logging.getLogger(n).filters) == 1 for n in HOOK_LOGGERS)


@given(
    name=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_0123456789"), min_size=1, max_size=40),
    state=st.sampled_from(["Running", "Completed", "Failed", "Crashed", "Cancelling", "Retrying"]),
)
def test_hook_of_reads_both_lines_and_nothing_else(name: str, state: str) -> None:
    assert hook_of(f"Running hook {name!r} in response to entering state {state!r}") == name
    assert hook_of(f"Hook {name!r} finished running successfully") == name
    assert hook_of(f"An error was encountered while running hook {name!r}") is None
    assert hook_of(f"Beginning flow run {name!r} for flow 'x'") is None
    assert hook_of(f"Hook {name!r} finished running successfully, and more") is None
    # a message that only starts like Prefect's line (a user's own multi-line log) is not hidden
    line = f"Running hook {name!r} in response to entering state {state!r}"
    assert hook_of(line + "\nERROR: disk full, 0 rows written") is None
    assert hook_of(line + " and then something else") is None


def test_a_record_that_cannot_be_formatted_is_passed_on() -> None:
    record = logging.LogRecord("prefect.engine", logging.INFO, __file__, 1, "Hook %r %d", ("x",), None)
    assert QuietHookLines().filter(record) is True and record.levelno == logging.INFO
