"""The end hook ``RunListener`` adds to a retried flow's ``Flow`` (``observe_all``), without a server: the
``Flow`` still pickles (process and cluster task runners ship it), the hook acts only for the runs it waits
for, and it goes with synthobs' other hooks when the flow is decorated."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
from prefect import flow

import prefect_synthobs as so
from prefect_synthobs.instrument.hook_logs import HOOK_NAMES
from prefect_synthobs.instrument.listener import RunListener, synthobs_flow_finished


@flow
def retried() -> int:
    return 1


def test_a_flow_holding_the_hook_still_pickles_and_gets_the_same_hook_back() -> None:
    @flow
    def local() -> int:
        return 2

    listener = RunListener(lambda: None)
    for f in (retried, local):
        assert listener._await_final_state(f, "run-1")
        assert listener._await_final_state(f, "run-2")  # added once
        assert f.on_completion_hooks.count(synthobs_flow_finished) == 1
        copy = cloudpickle.loads(cloudpickle.dumps(f))
        assert synthobs_flow_finished in copy.on_failure_hooks
    assert pickle.loads(pickle.dumps(synthobs_flow_finished)) is synthobs_flow_finished
    assert synthobs_flow_finished.__name__ in HOOK_NAMES  # Prefect's lines around it are quieted


def test_the_hook_records_only_the_runs_a_listener_waits_for_once_each() -> None:
    ended: list[tuple[str, Any]] = []

    class Recorded(RunListener):
        @staticmethod
        def _end_unobserved(runtime: Any, flow: Any, flow_run: Any, state: Any, task_runner: Any, info: Any) -> None:
            ended.append((str(flow_run.id), state))

    info = SimpleNamespace(observed=False, remote=False, parent_flow_run_id=None)
    runtime = SimpleNamespace(run_info=lambda run_id: info)
    listener = Recorded(lambda: runtime)  # type: ignore[arg-type,return-value]
    assert listener._await_final_state(retried, "waited")
    for run_id in ("other", "waited", "waited"):  # another run of the flow; the waited one's end hooks twice
        synthobs_flow_finished(retried, SimpleNamespace(id=run_id), f"final-{run_id}")
    assert ended == [("waited", "final-waited")]


def test_decorating_the_flow_later_replaces_the_hook_with_observes_own() -> None:
    @flow
    def later() -> int:
        return 3

    RunListener(lambda: None)._await_final_state(later, "run-1")
    observed = so.observe(kind="other")(later)
    assert synthobs_flow_finished not in observed.on_completion_hooks
