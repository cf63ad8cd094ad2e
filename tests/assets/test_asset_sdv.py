"""A real SDV GaussianCopula fitted on a real table and sampled in an observed flow: its synthetic table is a
Prefect asset with the real table upstream, read back from the real test server.

Runs in the sdv environment (``.venv-sdv``: pandas 2, SDV; ``scripts/test.sh`` lists it among the SDV tests).
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from asset_wiring import REFERENCED, SUCCEEDED, asset_events, assets_wired, related
from prefect import flow, task

sdv = pytest.importorskip("sdv", reason="SDV needs pandas < 3: these run in the sdv environment (scripts/test.sh)")

from sdv.metadata import Metadata  # noqa: E402
from sdv.single_table import GaussianCopulaSynthesizer  # noqa: E402

import prefect_synthobs as so  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server", "assets_wired")]
__all__ = ["assets_wired"]

SDV2 = int(sdv.__version__.split(".")[0]) >= 2


def people(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 12_000, n).round(2),
            "segment": rng.choice(["a", "b", "c"], n),
        }
    )


def test_a_sampled_gaussian_copula_materializes_its_table_with_the_real_table_upstream(store_dir: Path) -> None:
    table = f"people{uuid.uuid4().hex[:6]}"
    real = people()
    metadata = Metadata.detect_from_dataframes({table: real})
    seen: dict[str, Any] = {}

    @task
    def train() -> GaussianCopulaSynthesizer:
        synth = GaussianCopulaSynthesizer(metadata)
        synth.fit({table: real} if SDV2 else real)
        return synth

    @task
    def generate(synth: GaussianCopulaSynthesizer) -> pd.DataFrame:
        out = synth.sample(num_rows=200)
        return out[table] if SDV2 else out

    @so.observe(kind="generation", table=table)
    @flow
    def pipeline() -> None:
        synth = train()
        synthetic = generate(synth)
        seen["model_id"] = synth._synthesizer_id
        seen["scores"] = so.check_quality(real, synthetic, metadata, model=synth).scores

    state = pipeline(return_state=True)
    assert state.is_completed()
    flow_run_id = str(state.state_details.flow_run_id)
    (event,) = asset_events(SUCCEEDED, flow_run_id)
    assert event.resource.id == f"synthobs://{table}/gaussian_copula"
    assert related(event, "asset") == [
        {"prefect.resource.id": f"synthobs://{table}/real", "prefect.resource.role": "asset"}
    ]
    assert [r["prefect.resource.id"] for r in related(event, "asset-materialized-by")] == ["sdv"]
    assert [r["prefect.resource.id"] for r in related(event, "flow-run")] == [f"prefect.flow-run.{flow_run_id}"]
    (task_run,) = related(event, "task-run")
    assert task_run["prefect.resource.name"].startswith("generate")
    payload = event.payload
    assert payload["rows"] == 200 and payload["table"] == table
    assert payload["library"] == "sdv" and payload["synthesizer"] == "GaussianCopulaSynthesizer"
    assert payload["model_type"] == "gaussian_copula" and payload["model_id"] == seen["model_id"]
    assert payload["trained_on"] == table and (payload["fit_rows"], payload["fit_columns"]) == (300, 3)
    finite = {k: v for k, v in seen["scores"].items() if math.isfinite(v)}
    assert {"overall", "column_shapes"} <= set(payload["quality"]) <= set(finite)  # a NaN score is left out
    for score, value in payload["quality"].items():
        assert value == pytest.approx(finite[score], abs=1e-6)
    (referenced,) = asset_events(REFERENCED, flow_run_id)
    assert referenced.resource.id == f"synthobs://{table}/real"
