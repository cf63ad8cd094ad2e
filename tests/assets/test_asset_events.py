"""Synthetic tables as Prefect assets, read back from a real Prefect server (no SDV: the main environment).

A flow that fits a model on a real table and samples from it (autolog's recording of a fit and a sample, on a
small numpy model) and one that only counts rows with ``record_rows``: each synthetic table is one
``prefect.asset.materialization.succeeded`` event, the real table a related ``asset`` and a
``prefect.asset.referenced`` event, the flow run and the sampling task run related, the payload the rows,
the model, the quality scores and gates, the privacy spend. Off, other templates, refused and PII table names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from asset_wiring import FAILED, REFERENCED, SUCCEEDED, asset_events, assets_wired, related
from prefect import flow, task

import prefect_synthobs as so
from conftest import wait_for_events
from prefect_synthobs.autolog.session import fit_session, sample_call
from prefect_synthobs.config import active as so_settings

pytestmark = [pytest.mark.usefixtures("prefect_server", "assets_wired")]
__all__ = ["assets_wired"]

META = {"columns": {"age": {"sdtype": "numerical"}, "income": {"sdtype": "numerical"}}}


class TinyGaussian:
    """A generator fitted and sampled the way autolog records a library's (``fit_session``/``sample_call``)."""

    def fit(self, real: pd.DataFrame, table: str) -> None:
        with fit_session(self, "numpy", real, table_name=table):
            self.mean, self.cov = real.mean().to_numpy(), real.cov().to_numpy()
            self.columns = list(real.columns)

    def sample(self, n: int, table: str) -> pd.DataFrame:
        with sample_call(self, "numpy", table_name=table) as call:
            rng = np.random.default_rng(1)
            out = pd.DataFrame(rng.multivariate_normal(self.mean, self.cov, n), columns=self.columns)
            if call is not None:
                call.value = out
        return out


def real_table(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.normal(40, 10, n)
    return pd.DataFrame({"age": age, "income": age * 1000 + rng.normal(0, 5000, n)})


def run_id(state: Any) -> str:
    return str(state.state_details.flow_run_id)


def test_a_generation_run_materializes_its_synthetic_table_with_the_real_table_upstream(store_dir: Path) -> None:
    dataset = f"customers-{uuid.uuid4().hex[:6]}"
    budget = so.PrivacyBudget(dataset=dataset, total_epsilon=10.0)

    @task
    def train(real: pd.DataFrame) -> TinyGaussian:
        model = TinyGaussian()
        model.fit(real, table=dataset)
        return model

    @task
    def generate(model: TinyGaussian, n: int) -> pd.DataFrame:
        return model.sample(n, table=f"{dataset}_synthetic")

    @so.observe(kind="generation")
    @flow
    def pipeline() -> tuple[str, float]:
        real = real_table()
        model = train(real)
        synthetic = generate(model, 250)
        check = so.check_quality(real, synthetic, META, model=model, table=f"{dataset}_synthetic")
        so.record_privacy_spend(0.5, dataset=dataset, budget=budget)

        return check.scores["overall"], check.scores["column_shapes"]

    state = pipeline(return_state=True)
    overall, shapes = state.result()
    flow_run_id = run_id(state)
    (event,) = asset_events(SUCCEEDED, flow_run_id)
    synthetic_table = f"{dataset}_synthetic"
    assert event.resource.id == f"synthobs://{synthetic_table}/TinyGaussian"
    assert event.resource.get("prefect.resource.name") == f"{synthetic_table} (synthetic)"
    assert related(event, "asset") == [
        {"prefect.resource.id": f"synthobs://{dataset}/real", "prefect.resource.role": "asset"}
    ]  # the real table it was trained on: the upstream of the lineage
    assert [r["prefect.resource.id"] for r in related(event, "asset-materialized-by")] == ["numpy"]
    assert [r["prefect.resource.id"] for r in related(event, "flow-run")] == [f"prefect.flow-run.{flow_run_id}"]
    (task_run,) = related(event, "task-run")
    assert task_run["prefect.resource.name"].startswith("generate")
    payload = event.payload
    assert payload["rows"] == 250 and payload["table"] == synthetic_table
    assert payload["library"] == "numpy" and payload["synthesizer"] == "TinyGaussian"
    assert payload["model_type"] == "TinyGaussian" and payload["model_id"].startswith("TinyGaussian-")
    assert payload["trained_on"] == dataset and (payload["fit_rows"], payload["fit_columns"]) == (300, 2)
    assert payload["quality"]["overall"] == pytest.approx(overall, abs=1e-6)
    assert payload["quality"]["column_shapes"] == pytest.approx(shapes, abs=1e-6)
    assert payload["privacy_epsilon"] == {dataset: 0.5}
    assert payload["flow_run_id"] == flow_run_id
    (referenced,) = asset_events(REFERENCED, flow_run_id)
    assert referenced.resource.id == f"synthobs://{dataset}/real"
    assert task_run["prefect.resource.id"] in {r.id for r in referenced.related}


def test_rows_counted_by_hand_materialize_with_the_flows_model_type_and_a_failed_gate_fails_it(
    store_dir: Path,
) -> None:
    table = f"orders{uuid.uuid4().hex[:6]}"

    @so.observe(kind="generation", model_type="gaussian_copula", table=table)
    @flow
    def generate(fail: bool) -> None:
        so.record_rows(120)
        so.record_quality("overall", 0.91, threshold=0.8, model="copula-v2")
        so.record_quality("column_shapes", 0.5, threshold=0.7, model="copula-v2")
        if fail:
            raise RuntimeError("the gate failed")

    completed = generate(False, return_state=True)
    failed = generate(True, return_state=True)
    (event,) = asset_events(SUCCEEDED, run_id(completed))
    assert event.resource.id == f"synthobs://{table}/gaussian_copula"
    assert related(event, "asset")[0]["prefect.resource.id"] == f"synthobs://{table}/real"
    assert event.payload["rows"] == 120 and event.payload["model_id"] == "copula-v2"
    assert event.payload["quality"] == {"overall": 0.91, "column_shapes": 0.5}
    assert event.payload["gates_passed"] == ["overall"] and event.payload["gates_failed"] == ["column_shapes"]
    assert not related(event, "asset-materialized-by")  # no library known
    (failure,) = asset_events(FAILED, run_id(failed))
    assert failure.resource.id == event.resource.id and failure.payload["rows"] == 120


def test_assets_off_emit_nothing_and_other_templates_give_their_keys(store_dir: Path) -> None:
    table = f"people{uuid.uuid4().hex[:6]}"

    @so.observe(kind="generation", model_type="ctgan", table=table)
    @flow
    def generate() -> None:
        so.record_rows(10)

    so_settings.configure(assets=False)
    off = generate(return_state=True)
    so_settings.configure(
        assets=True,
        asset_key_template="s3://lake/{library}/{model_type}/{table}",
        asset_upstream_key_template="postgres://prod/{table}",
    )
    on = generate(return_state=True)
    (event,) = asset_events(SUCCEEDED, run_id(on))
    assert event.resource.id == f"s3://lake/unknown/ctgan/{table}"
    assert related(event, "asset")[0]["prefect.resource.id"] == f"postgres://prod/{table}"
    # the later run's event arrived: the earlier run's would have too
    assert wait_for_events(SUCCEEDED, related_flow_run=run_id(off), timeout=2) == []
    assert wait_for_events(REFERENCED, related_flow_run=run_id(off), timeout=0) == []


def test_a_table_prefect_refuses_warns_once_and_never_fails_the_flow(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"good{uuid.uuid4().hex[:6]}"

    @so.observe(kind="generation", model_type="ctgan")
    @flow
    def generate() -> str:
        so.record_rows(5, table="my table #1")
        so.record_rows(7, table=good)
        return "done"

    with caplog.at_level(logging.WARNING):
        states = [generate(return_state=True) for _ in range(2)]
    assert [s.result() for s in states] == ["done", "done"]
    warnings = [r.getMessage() for r in caplog.records if "is not materialized as a Prefect asset" in r.getMessage()]
    assert len(warnings) == 1 and "'my table #1'" in warnings[0] and "cannot contain ' '" in warnings[0]
    events = asset_events(SUCCEEDED, run_id(states[1]))
    assert [e.resource.id for e in events] == [f"synthobs://{good}/ctgan"]


def test_an_email_in_a_table_name_or_a_model_id_is_redacted_in_the_events(store_dir: Path) -> None:
    email = f"ann.{uuid.uuid4().hex[:6]}@example.com"

    @so.observe(kind="generation", model_type="ctgan", table=email)
    @flow
    def generate() -> None:
        so.record_rows(3)
        so.record_quality("overall", 0.8, model=f"owner {email}")

    flow_run_id = run_id(generate(return_state=True))
    (event,) = asset_events(SUCCEEDED, flow_run_id)
    (referenced,) = asset_events(REFERENCED, flow_run_id)
    part = "redacted-" + hashlib.sha256(email.encode()).hexdigest()[:8]  # apart from other redacted tables
    assert event.resource.id == f"synthobs://{part}/ctgan"
    assert referenced.resource.id == f"synthobs://{part}/real"
    text = json.dumps([event.model_dump(mode="json"), referenced.model_dump(mode="json")])
    assert email not in text and "[REDACTED]" in event.payload["table"]
    assert event.payload["model_id"] == "owner [REDACTED]"
