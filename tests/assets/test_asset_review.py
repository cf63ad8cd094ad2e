"""The review of the synthetic-table assets (issue 26): retries and several models, PII in payload keys and in
keys, workers' samples, and the once-per-table warnings' memory.

A run's asset tells its last attempt, as its ``flow_runs`` row does: a flow retry drops the earlier attempts'
samples and scores (their privacy spend stays: it happened), a task retry counts each task run's last attempt,
and the models' rows of a table add up to the run's rows of it (rows no model here sampled: their own part).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect import flow, task
from test_asset_plan import CONFIG, copula, ended, plan_of, quality, spend

import prefect_synthobs as so
from prefect_synthobs.autolog.session import fit_session, sample_call
from prefect_synthobs.instrument import assets as assets_module
from prefect_synthobs.instrument.asset_plan import AssetConfig, Materialization, ModelFacts, key_part, plan_run
from prefect_synthobs.instrument.assets import LEDGER, AssetLedger, materialize_run, note_sample, reset_warnings


class Tiny:
    """A generator fitted and sampled the way autolog records a library's."""

    def fit(self, real: pd.DataFrame, table: str) -> None:
        with fit_session(self, "numpy", real, table_name=table):
            self.mean, self.cov = real.mean().to_numpy(), real.cov().to_numpy()
            self.columns = list(real.columns)

    def sample(self, n: int, table: str) -> pd.DataFrame:
        with sample_call(self, "numpy", table_name=table) as call:
            out = pd.DataFrame(
                np.random.default_rng(1).multivariate_normal(self.mean, self.cov, n), columns=self.columns
            )
            if call is not None:
                call.value = out
        return out


class Tiny2(Tiny):
    """Another model type (its class name)."""


def real_table(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.normal(40, 10, n)
    return pd.DataFrame({"age": age, "income": age * 1000 + rng.normal(0, 5000, n)})


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, prefect_server: str) -> Iterator[list[tuple[Materialization, str]]]:
    """The materializations emitted at runs' ends (not sent: the payload is what is checked here)."""
    LEDGER.clear()
    reset_warnings()
    out: list[tuple[Materialization, str]] = []
    lock = threading.Lock()

    def fake(item: Materialization, flow_run_id: str) -> None:
        with lock:
            out.append((item, flow_run_id))

    monkeypatch.setattr(assets_module, "emit_materialization", fake)
    yield out
    LEDGER.clear()
    reset_warnings()


def rows_of(captured: list[tuple[Materialization, str]], state: Any) -> dict[str, int]:
    run = str(state.state_details.flow_run_id)
    return {item.key: item.metadata["rows"] for item, r in captured if r == run}


def test_a_flow_retry_counts_the_last_attempts_rows_of_each_model(captured: list[Any]) -> None:
    table = f"t{uuid.uuid4().hex[:6]}"
    a, b = Tiny(), Tiny2()
    a.fit(real_table(), table)
    b.fit(real_table(), table)
    attempts: list[int] = []

    @so.observe(kind="generation", table=table)
    @flow(retries=1, retry_delay_seconds=0)
    def gen() -> None:
        attempts.append(1)
        a.sample(100, table=table + "_syn")
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        a.sample(20, table=table + "_syn")
        b.sample(30, table=table + "_syn")

    state = gen(return_state=True)
    assert state.is_completed() and len(attempts) == 2
    assert rows_of(captured, state) == {f"synthobs://{table}_syn/Tiny": 120, f"synthobs://{table}_syn/Tiny2": 30}


def test_a_task_retry_counts_each_task_runs_last_attempt(captured: list[Any]) -> None:
    table = f"t{uuid.uuid4().hex[:6]}"
    a, b = Tiny(), Tiny2()
    a.fit(real_table(), table)
    b.fit(real_table(), table)
    tries: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    def sample_both() -> None:
        tries.append(1)
        a.sample(100, table=table + "_syn")
        if len(tries) == 1:
            raise RuntimeError("flaky")
        b.sample(30, table=table + "_syn")

    @so.observe(kind="generation")
    @flow
    def gen() -> None:
        sample_both()

    state = gen(return_state=True)
    assert state.is_completed() and len(tries) == 2
    assert rows_of(captured, state) == {f"synthobs://{table}_syn/Tiny": 100, f"synthobs://{table}_syn/Tiny2": 30}


def test_a_later_attempt_drops_samples_and_scores_but_keeps_the_privacy_spend() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", copula("m1"), {"customers": 100}, attempt=1)
    ledger.scored(quality("overall", 0.1, model_id="m1"), attempt=1)
    ledger.spent(spend("customers", 0.5))
    ledger.sampled("run-1", copula("m2"), {"customers": 30}, attempt=2)
    ledger.sampled("run-1", copula("m1"), {"customers": 5}, attempt=1)  # late: its attempt was retried
    (item,) = plan_of(ledger, ended({"customers": 30}))
    assert item.metadata["model_id"] == "m2" and item.metadata["rows"] == 30
    assert "quality" not in item.metadata and item.metadata["privacy_epsilon"] == {"customers": 0.5}


def test_task_attempts_each_task_run_counts_its_last_one() -> None:
    ledger = AssetLedger()
    t1 = SimpleNamespace(id="t1", name="sample-1", run_count=1)
    ledger.sampled("run-1", copula("m1"), {"customers": 100}, t1)
    ledger.sampled("run-1", copula("m1"), {"customers": 7}, SimpleNamespace(id="t2", name="other", run_count=1))
    t1.run_count = 2
    ledger.sampled("run-1", copula("m1"), {"customers": 40}, t1)
    ledger.sampled("run-1", copula("m1"), {"customers": 2}, t1)
    ledger.sampled("run-1", ModelFacts("m2", "ctgan"), {"customers": 10}, t1)
    items = {i.metadata.get("model_id"): i for i in plan_of(ledger, ended({"customers": 59}))}
    assert items["m1"].metadata["rows"] == 49 and items["m2"].metadata["rows"] == 10


def test_the_models_rows_add_up_to_the_runs_rows_of_the_table() -> None:
    """Rows sampled in other processes (a worker's tasks) are the run's, but no model here sampled them."""
    ledger = AssetLedger()
    ledger.sampled("run-1", copula("m1"), {"customers": 300})
    ledger.sampled("run-1", ModelFacts("m2", "ctgan", "sdv", "CTGANSynthesizer"), {"customers": 100})
    items = plan_of(ledger, ended({"customers": 450}, model_type="ctgan"))
    assert sum(i.metadata["rows"] for i in items) == 450
    by_key = {i.key: i.metadata for i in items}
    assert by_key["synthobs://customers/gaussian_copula"]["rows"] == 300
    models = {m.get("model_id"): m for m in by_key["synthobs://customers/ctgan"]["models"]}
    assert models["m2"]["rows"] == 100
    assert models[None]["rows"] == 50 and models[None]["synthesizer"] == "other processes"


PII = st.sampled_from(["ann@example.com", "bob.smith@corp.example.org", "ssn_123-45-6789", "4111111111111111"])


def emitted_json(item: Materialization, monkeypatch: pytest.MonkeyPatch) -> str:
    """Everything ``emit_materialization`` hands Prefect for ``item`` (each event's name, resource, related
    resources and payload), as JSON."""
    from prefect_synthobs.instrument import prefect_api

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(prefect_api, "emit_event", lambda **kw: sent.append(kw))
    assets_module.emit_materialization(item, "run-1")
    assert len(sent) == 2
    return json.dumps(sent, default=lambda o: o.model_dump(mode="json") if hasattr(o, "model_dump") else str(o))


@settings(max_examples=30, deadline=None)
@given(pii=PII, prefix=st.sampled_from(["", "ks:", "tv_", "overall "]), other=PII)
def test_no_pii_anywhere_in_the_emitted_events_dataset_and_metric_names_included(
    pii: str, prefix: str, other: str
) -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", ModelFacts("m1", "ctgan", "sdv", "X", (other,)), {pii: 3})
    ledger.scored(quality(prefix + pii, 0.8, table=pii, model_id="m1", passed=True, gate=prefix + other))
    ledger.scored(quality(prefix + other, 0.6, table=pii, model_id="m1"))
    ledger.spent(spend(pii, 0.5))
    ledger.spent(spend(other, 0.25))
    (item,) = plan_of(ledger, ended({pii: 3}))
    with pytest.MonkeyPatch.context() as monkeypatch:
        text = emitted_json(item, monkeypatch)
    assert pii not in text and other not in text
    assert any("[REDACTED]" in k for k in item.metadata["quality"])
    assert len(item.metadata["privacy_epsilon"]) >= 1


def test_datasets_that_redact_alike_sum_their_spends() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", copula(), {"customers": 3})
    ledger.spent(spend("ann@example.com", 0.5))
    ledger.spent(spend("bob@example.com", 0.25))
    (item,) = plan_of(ledger, ended({"customers": 3}))
    assert item.metadata["privacy_epsilon"] == {"[REDACTED]": 0.75}


def test_tables_whose_names_redact_alike_stay_two_assets_without_their_names() -> None:
    ledger = AssetLedger()
    ledger.sampled("run-1", copula(), {"ann@example.com": 3})
    ledger.sampled("run-1", copula("m2"), {"bob@example.com": 4})
    items = plan_of(ledger, ended({"ann@example.com": 3, "bob@example.com": 4}))
    keys = {i.key for i in items}
    assert len(keys) == 2 and all(k.startswith("synthobs://redacted-") for k in keys), keys
    assert not any("example" in k for k in keys)
    assert key_part("ann@example.com", redact_pii=True) == key_part("ann@example.com", redact_pii=True)
    assert key_part("customers", redact_pii=True) == "customers"


def test_a_workers_samples_and_scores_are_not_noted() -> None:
    """A worker process sees the run remotely: its asset events are emitted where the flow runs, never here."""
    infos = {
        "remote-run": SimpleNamespace(remote=True, attempts=0),
        "local-run": SimpleNamespace(remote=False, attempts=1),
    }
    ledger = AssetLedger()
    sink = assets_module.AssetSink(ledger=ledger, run_info=infos.get)  # as the runtime wires it
    for run in infos:
        note_sample(run, copula(), {"customers": 5}, ledger=ledger)
        sink.handle(quality("overall", 0.9, flow_run_id=run))
    assert ledger.take("remote-run") is None
    local = ledger.take("local-run")
    assert local is not None and local.attempt == 1 and len(local.scores) == 1


def test_the_once_per_table_warnings_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    reset_warnings()
    caplog.set_level(logging.WARNING)
    config = AssetConfig()
    kept = getattr(assets_module, "_WARNED_KEPT", 256)  # (the bound; a name the fix added)
    try:
        for i in range(kept + 50):
            materialize_run(ended({f"bad table {i}": 1}), config, ledger=AssetLedger(), emit=lambda *_: None)
        assert len(assets_module._warned) <= kept + 1
        refused = [r for r in caplog.records if "is not materialized" in r.getMessage()]
        assert len(refused) == kept
        assert sum("further ones" in r.getMessage() for r in caplog.records) == 1
    finally:
        reset_warnings()


def test_plan_run_alone_keeps_pii_out_of_keys_in_every_dict() -> None:
    planned, _ = plan_run(None, ended({"ann@example.com": 3}), CONFIG)
    assert "ann@example.com" not in json.dumps([planned[0].key, planned[0].metadata])
