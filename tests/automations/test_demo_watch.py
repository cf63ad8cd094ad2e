"""``synthobs demo`` waits for one firing per failed gate, and says which gate's score was never computed."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.states import Completed, Failed

import prefect_synthobs as so
from prefect_synthobs.automations import demo
from prefect_synthobs.cli import _failed_gates
from prefect_synthobs.reports.demo_summary import automation_lines


def _firing(gate: str, action: str | None = "do-nothing executed") -> demo.Firing:
    return demo.Firing("synthobs-demo/quality-gate-failed", gate, "customers", None, 0.6, action)


def _feed(monkeypatch: pytest.MonkeyPatch, polls: list[list[demo.Firing]]) -> list[int]:
    """The event feed shows ``polls`` one poll at a time (the last one from then on); the polls made so far."""
    seen: list[int] = []

    def firings(*_: Any) -> list[demo.Firing]:
        seen.append(len(seen))
        return polls[min(len(seen) - 1, len(polls) - 1)]

    monkeypatch.setattr(demo, "get_client", lambda **_: contextlib.nullcontext(None))
    monkeypatch.setattr(demo, "_firings", firings)
    monkeypatch.setattr(demo, "POLL_SECONDS", 0.0)
    return seen


@pytest.mark.parametrize("expected", [1, 2, 3])
def test_watch_reads_back_until_every_expected_firing_has_its_action(
    monkeypatch: pytest.MonkeyPatch, expected: int
) -> None:
    # the feed shows the firings one poll at a time, the last one first without its action
    gates = [f"min_gate_{i}" for i in range(expected)]
    polls = [[_firing(g) for g in gates[:n]] for n in range(expected + 1)]
    polls.insert(-1, [*polls[-1][:-1], _firing(gates[-1], action=None)])
    seen = _feed(monkeypatch, polls)
    state = demo.DemoAutomations(applied=5, automation_id=demo.UUID(int=1))
    state.watch(expected=expected, timeout=5)
    assert [f.gate for f in state.firings] == gates and all(f.action for f in state.firings)
    assert len(seen) == len(polls)  # not one poll fewer (the bug: it stopped at the first firing)


def test_watch_gives_up_at_its_timeout_with_what_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "get_client", lambda **_: contextlib.nullcontext(None))
    monkeypatch.setattr(demo, "_firings", lambda *_: [_firing("min_overall")])
    monkeypatch.setattr(demo, "POLL_SECONDS", 0.01)
    state = demo.DemoAutomations(applied=5, automation_id=demo.UUID(int=1))
    state.watch(expected=2, timeout=0.2)
    assert [f.gate for f in state.firings] == ["min_overall"] and state.waited_s >= 0.2


def test_watch_waits_for_nothing_when_no_gate_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_firings", lambda *_: pytest.fail("read the feed"))
    demo.DemoAutomations(applied=5, automation_id=demo.UUID(int=1)).watch(expected=0)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["overall", "column_pair_trends", "tstr_ratio", "exact_match_rate"]),
        st.one_of(st.floats(min_value=0, max_value=1), st.just(math.nan)),
    )
)
def test_failed_gates_counts_what_the_gates_fail_on_the_runs_scores(scores: dict[str, float]) -> None:
    gates = so.QualityGates(
        min_overall=0.75, min_column_pair_trends=0.95, min_tstr_ratio=0.6, max_exact_match_rate=0.01
    )

    def passes(value: float | None, kind: str, threshold: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= threshold if kind == "min" else value <= threshold

    expected = [gate for gate, score, kind, t in gates.gates() if not passes(scores.get(score), kind, t)]
    assert _failed_gates(Completed(data=scores), gates) == expected


def test_failed_gates_of_a_failed_run_is_none() -> None:
    assert _failed_gates(Failed(data=ValueError("boom")), so.QualityGates(min_overall=0.75)) == []


def test_watch_for_named_gates_is_not_ended_by_other_gates_firings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A challenger's gate check (or another run on the server) fires the same automation: those firings must
    not end the wait before the release's own gates' firings are read back with their actions."""
    others = [_firing("min_overall"), _firing("min_column_pair_trends")]  # as many as awaited, with actions
    polls = [
        others,
        [*others, _firing("min_tstr_ratio", action=None)],
        [*others, _firing("min_tstr_ratio"), _firing("max_exact_match_rate", action=None)],
        [*others, _firing("min_tstr_ratio"), _firing("max_exact_match_rate")],
    ]
    seen = _feed(monkeypatch, polls)
    state = demo.DemoAutomations(applied=5, automation_id=demo.UUID(int=1))
    state.watch(expected=2, timeout=5, gates=["min_tstr_ratio", "max_exact_match_rate"])
    assert len(seen) == len(polls)
    assert {f.gate for f in state.firings if f.action} >= {"min_tstr_ratio", "max_exact_match_rate"}


def test_a_gate_on_a_score_never_computed_says_so_with_its_threshold() -> None:
    firing = {"automation": "a", "gate": "min_tstr_ratio", "table": "t", "value": None, "threshold": 0.6, "action": "x"}
    line = automation_lines("p/", 1, [firing], waited_s=0.1, timeout_s=15, removed=True)[1]
    assert line == "  a for gate min_tstr_ratio (table t, not computed, against 0.6): x"
