"""Quality gates: pass, fail and warn paths, recorded rows and metrics, events read back from the server."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prometheus_client.parser import text_string_to_metric_families

import prefect_synthobs as so
from conftest import wait_for_events
from prefect_synthobs import catalog as names
from prefect_synthobs.instrument.gates import GateResult, evaluate_gates
from prefect_synthobs.metrics import REGISTRY

pytestmark = pytest.mark.usefixtures("prefect_server")

META = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "numerical"}, "c": {"sdtype": "categorical"}}}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    return pd.DataFrame(
        {"x": x, "y": 2 * x + rng.normal(0, 0.5, n), "c": rng.choice(["a", "b", "c"], n).astype(object)}
    )


def events_for(flow_run_id: str, count: int = 1) -> list[object]:
    return wait_for_events(names.EVENT_QUALITY_GATE_FAILED, related_flow_run=flow_run_id, count=count)


def gate_counts(table: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(__import__("prometheus_client").generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.name == "synthobs_quality_gate_checks_total" and s.labels.get("table") == table:
                out[(s.labels["gate"], s.labels["result"])] = s.value
    return out


def test_evaluate_gates_is_pure_and_fails_closed() -> None:
    gates = so.QualityGates(min_overall=0.9, max_exact_match_rate=0.01, min_tstr_ratio=0.8)
    results = {r.gate: r for r in evaluate_gates({"overall": 0.95, "exact_match_rate": 0.2}, gates)}
    assert results["min_overall"].passed and not results["max_exact_match_rate"].passed
    assert not results["min_tstr_ratio"].passed  # not computed: the gate is missed, not skipped
    assert "not computed" in results["min_tstr_ratio"].describe()
    assert GateResult("g", "s", "max", 0.5, 0.5).passed


def test_passing_gates_record_scores(store_dir: Path) -> None:
    table = f"ok-{uuid.uuid4().hex[:6]}"

    @so.observe(kind="quality", table=table)
    @flow(name=f"gated-ok-{table}")
    def check() -> bool:
        real, holdout = frame(400, 1), frame(400, 2)
        result = so.check_quality(
            real,
            frame(400, 3),
            META,
            holdout=holdout,
            target="y",
            gates=so.QualityGates(
                min_overall=0.7, max_membership_inference_auc=0.7, min_tstr_ratio=0.8, max_exact_match_rate=0.0
            ),
        )
        return result.passed

    assert check() is True
    rows = so.HealthStore(str(store_dir)).read(names.QUALITY_CHECKS)
    rows = rows[rows.table_name == table].set_index("metric")
    assert set(rows.index) >= {
        "overall",
        "column_shapes",
        "column_pair_trends",
        "exact_match_rate",
        "membership_inference_auc",
        "dcr_overfitting_protection",
        "tstr_ratio",
    }
    assert rows.loc["overall", "threshold"] == 0.7 and bool(rows.loc["overall", "passed"])
    assert bool(rows.loc["membership_inference_auc", "passed"])  # a max gate: value <= threshold
    assert pd.isna(rows.loc["column_shapes", "passed"])  # not gated: recorded, no verdict
    counts = gate_counts(table)
    assert counts[("min_overall", "pass")] == 1 and counts[("max_membership_inference_auc", "pass")] == 1


def test_failing_gates_fail_the_flow_and_raise_events(store_dir: Path) -> None:
    table = f"bad-{uuid.uuid4().hex[:6]}"

    @so.observe(kind="quality", table=table)
    @flow(name=f"gated-fail-{table}")
    def check() -> None:
        real = frame(300, 1)
        leaky = pd.concat([real.iloc[:150], frame(150, 4, shift=3.0)], ignore_index=True)  # half copied, half off
        so.check_quality(real, leaky, META, gates=so.QualityGates(min_overall=0.95, max_exact_match_rate=0.05))

    state = check(return_state=True)
    assert state.is_failed()
    with pytest.raises(so.QualityGateFailed) as info:
        state.result()
    message = str(info.value)
    assert table in message and "overall = " in message and "exact_match_rate = 0.5000" in message
    events = events_for(str(state.state_details.flow_run_id), count=2)
    assert sorted(e.payload["gate"] for e in events) == ["max_exact_match_rate", "min_overall"]  # type: ignore[attr-defined]
    by_gate = {e.payload["gate"]: e for e in events}  # type: ignore[attr-defined]
    assert (
        by_gate["max_exact_match_rate"].payload["value"] == 0.5
        and by_gate["max_exact_match_rate"].payload["threshold"] == 0.05
    )
    assert by_gate["min_overall"].resource.id == f"synthobs.table.{table}"
    rows = so.HealthStore(str(store_dir)).read(names.FLOW_RUNS)
    assert rows.loc[rows.flow_name == f"gated-fail-{table}", "error_type"].tolist() == ["QualityGateFailed"]
    assert gate_counts(table)[("max_exact_match_rate", "fail")] == 1


def test_warn_policy_logs_and_lets_the_flow_finish(store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = f"warn-{uuid.uuid4().hex[:6]}"

    @so.observe(kind="quality", table=table)
    @flow(name=f"gated-warn-{table}")
    def check() -> bool:
        result = so.check_quality(
            frame(300, 1), frame(300, 5, shift=3.0), META, gates=so.QualityGates(min_overall=0.95, policy="warn")
        )
        return result.passed

    with caplog.at_level("WARNING", logger="prefect.synthobs"):
        state = check(return_state=True)
    assert state.is_completed() and state.result() is False
    assert any("quality gates failed" in r.getMessage() for r in caplog.records)
    events = events_for(str(state.state_details.flow_run_id))
    assert len(events) == 1 and events[0].payload["table"] == table  # type: ignore[attr-defined]
    assert events[0].payload["value"] < 0.95  # type: ignore[attr-defined]
    assert gate_counts(table)[("min_overall", "fail")] == 1


def test_gates_by_block_name_and_from_settings(store_dir: Path) -> None:
    name = f"gates-{uuid.uuid4().hex[:6]}"
    so.QualityGates(min_overall=0.999, policy="warn").save(name)
    real = frame(200, 1)
    assert not so.check_quality(real, frame(200, 2), META, gates=name, table="t").passed
    so.configure(quality_gates_block=name)
    assert so.check_quality(real, frame(200, 2), META, table="t").results[0].gate == "min_overall"
    so.configure(quality_gates_block=None)
    assert so.check_quality(real, frame(200, 2), META, table="t").results == []  # no gates: scores only
    with pytest.raises(ValueError, match="could not load QualityGates block"):
        so.check_quality(real, real, META, gates="no-such-gates")


def test_diagnostic_always_detection_and_disclosure_when_asked(store_dir: Path) -> None:
    table = f"breadth-{uuid.uuid4().hex[:6]}"
    meta = {"columns": {**META["columns"], "id": {"sdtype": "id"}}, "primary_key": "id"}

    def keyed(df: pd.DataFrame, duplicate: bool) -> pd.DataFrame:
        df = df.assign(id=np.arange(len(df)))
        if duplicate:
            df.loc[df.index[:40], "id"] = 0  # 39 repeats of the first key
        return df

    @so.observe(kind="quality", table=table)
    @flow(name=f"gated-breadth-{table}")
    def check() -> dict[str, float]:
        real = keyed(frame(400, 1), False)
        synthetic = keyed(frame(400, 3, shift=0.1), True)
        result = so.check_quality(
            real,
            synthetic,
            meta,
            known_columns=["c"],
            sensitive_columns=["x"],
            gates=so.QualityGates(min_overall=0.5, min_diagnostic=0.99, min_detection=0.0, policy="warn"),
        )
        assert [g.gate for g in result.failed] == ["min_diagnostic"]
        assert result.diagnostic is not None and "KeyUniqueness" in set(result.diagnostic.details["Metric"])
        return result.scores

    scores = check()
    assert 0 < scores["diagnostic"] < 0.99 and scores["data_structure"] == 1.0
    assert 0 <= scores["detection"] <= 1 and 0 <= scores["disclosure_protection"] <= 1
    rows = so.HealthStore(str(store_dir)).read(names.QUALITY_CHECKS)
    rows = rows[rows.table_name == table].set_index("metric")
    assert {"diagnostic", "data_validity", "data_structure", "detection", "disclosure_protection"} <= set(rows.index)
    assert not bool(rows.loc["diagnostic", "passed"]) and rows.loc["diagnostic", "threshold"] == 0.99
    assert gate_counts(table)[("min_diagnostic", "fail")] == 1


def test_disclosure_gate_without_its_columns_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="known_columns=, sensitive_columns="):
        so.check_quality(frame(50, 1), frame(50, 2), META, gates=so.QualityGates(min_disclosure_protection=0.5))


def test_quality_gate_failed_survives_pickling_as_a_worker_sends_it() -> None:
    import pickle

    from prefect_synthobs.instrument.gates import GateResult, QualityGateFailed

    failed = [GateResult(gate="min_overall", score="overall", kind="min", threshold=0.8, value=0.4)]
    error = pickle.loads(pickle.dumps(QualityGateFailed("people", failed)))
    assert isinstance(error, QualityGateFailed) and error.table == "people" and error.failed == failed
    assert str(error) == str(QualityGateFailed("people", failed))
