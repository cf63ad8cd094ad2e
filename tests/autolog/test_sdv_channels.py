"""Every channel an autologged fit leaves by: spans at a real OTLP receiver, the progress and loss-curve
artifacts on the real Prefect server, metrics, events; and what an autolog failure costs (one warning,
never the fit). Runs in the sdv environment (scripts/test.sh)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from otlp_receiver import http_receiver
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from conftest import wait_for_events

pytest.importorskip("sdv", reason="SDV needs pandas < 3: these run in the sdv environment (scripts/test.sh)")

from sdv.metadata import Metadata
from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer
from test_sdv_autolog import fit, sample

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.autolog.progress import PUBLISHER
from prefect_synthobs.autolog.session import reset_warnings
from prefect_synthobs.health.events import EpochEnded, ModelFitted
from prefect_synthobs.instrument.recording import Recording

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def people(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 90, n), "segment": rng.choice(["a", "b", "c"], n)})


def test_fit_and_sample_spans_reach_a_collector_in_one_trace(store_dir: Path) -> None:
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})
    with http_receiver() as receiver:
        so.configure(otlp_endpoint=receiver.endpoint, otlp_protocol="http/protobuf")
        try:

            @so.observe(kind="training", table="people")
            @flow(name=f"spans-{uuid.uuid4().hex[:6]}")
            def traced() -> str:
                synth = CTGANSynthesizer(metadata, epochs=2)
                fit(synth, real)
                synth.sample(num_rows=64)
                return str(synth._synthesizer_id)

            model_id = traced()
            spans = receiver.wait_for(lambda got: any(s.name == names.SPAN_GENERATION_SAMPLE for s in got))
        finally:
            so.configure(otlp_endpoint=None, otlp_protocol=None)
    fit_spans = [s for s in spans if s.name == names.SPAN_TRAINING_FIT]
    epochs = [s for s in spans if s.name == names.SPAN_TRAINING_EPOCH]
    sample = [s for s in spans if s.name == names.SPAN_GENERATION_SAMPLE]
    assert len(fit_spans) == 1 and len(epochs) == 2 and len(sample) == 1
    assert fit_spans[0].attributes[names.ATTR_MODEL_ID] == model_id and fit_spans[0].attributes[names.ATTR_EPOCHS] == 2
    assert fit_spans[0].attributes[names.ATTR_FIT_ROWS] == 300 and fit_spans[0].attributes[names.ATTR_LIBRARY] == "sdv"
    assert {e.parent_span_id for e in epochs} == {fit_spans[0].span_id}
    assert sorted(e.attributes[names.ATTR_EPOCH] for e in epochs) == [0, 1]
    assert all(names.ATTR_LOSS_PREFIX + "generator" in e.attributes for e in epochs)
    assert sample[0].attributes[names.ATTR_ROWS] == 64 and sample[0].attributes[names.ATTR_MODEL_ID] == model_id
    flow_span = [s for s in spans if s.attributes.get("prefect.run.type") == "flow"]
    assert fit_spans[0].parent_span_id == flow_span[0].span_id and sample[0].trace_id == flow_span[0].trace_id


def test_progress_and_loss_curve_artifacts_belong_to_the_run(store_dir: Path) -> None:
    real = people(300)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="training", table="people")
    @flow
    def watched() -> None:
        fit(CTGANSynthesizer(metadata, epochs=3), real)

    state = watched(return_state=True)
    assert PUBLISHER.drain(30)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    by_type = {a.type: a for a in found}
    assert by_type["progress"].key == "synthobs-fit-ctgan" and float(by_type["progress"].data) == 100.0
    assert "completed after 3 epochs" in (by_type["progress"].description or "")
    assert by_type["markdown"].key == "synthobs-loss-ctgan" and "data:image/svg+xml" in str(by_type["markdown"].data)


def test_a_nan_loss_raises_a_training_event_an_automation_can_match(store_dir: Path) -> None:
    """nan_loss is always on: a NaN loss at the end of an epoch is one ``synthobs.training.nan_loss``."""
    import ctgan.synthesizers.ctgan as ctgan_module

    real = people(200)
    metadata = Metadata.detect_from_dataframes({"people": real})
    original = ctgan_module.CTGAN.fit

    def poisoned(self: object, *args: object, **kwargs: object) -> object:
        # a diverged discriminator: its loss is NaN (the library's own loss_values carry it)
        result = original(self, *args, **kwargs)
        frame = self.loss_values.copy()  # type: ignore[attr-defined]
        frame.loc[len(frame)] = {"Epoch": len(frame), "Generator Loss": 1.0, "Discriminator Loss": float("nan")}
        self.loss_values = frame  # type: ignore[attr-defined]
        return result

    @so.observe(kind="training", table="people")
    @flow
    def diverging() -> str:
        synth = CTGANSynthesizer(metadata, epochs=1)
        fit(synth, real)
        return str(synth._synthesizer_id)

    ctgan_module.CTGAN.fit = poisoned  # type: ignore[method-assign]
    try:
        model_id = diverging()
    finally:
        ctgan_module.CTGAN.fit = original  # type: ignore[method-assign]
    events = wait_for_events("synthobs.training.nan_loss", resource_id=f"synthobs.model.{model_id}")
    assert events and events[0].payload["loss_type"] == "discriminator" and events[0].payload["epoch"] == 1


def test_an_autolog_failure_costs_one_warning_never_the_fit(
    store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_warnings()

    handle = Recording.handle

    def broken(self: Recording, event: object) -> None:  # the fit's and the epochs' events fail; the rest records
        if isinstance(event, (EpochEnded, ModelFitted)):
            raise OSError("disk on fire")
        handle(self, event)

    monkeypatch.setattr(Recording, "handle", broken)
    real = people(200)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="training", table="people")
    @flow
    def unlucky() -> int:
        total = 0
        for _ in range(2):
            synth = CTGANSynthesizer(metadata, epochs=2)
            fit(synth, real)
            total += len(sample(synth, 10))
        return total

    with caplog.at_level(logging.WARNING):
        assert unlucky() == 20
    lost = [r.getMessage() for r in caplog.records if "disk on fire" in r.getMessage()]
    assert len([m for m in lost if "training epoch" in m]) == 1  # once per process, not per epoch
    assert len([m for m in lost if "end of a fit" in m]) == 1
    assert so.HealthStore(str(store_dir)).read(names.FLOW_RUNS).rows.tolist() == [20]  # rows still counted


def test_many_fits_in_threads_each_get_their_own_rows(store_dir: Path) -> None:
    """Fits in threads started with the run's context: every model its own row, nothing crossed."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    real = people(200)
    metadata = Metadata.detect_from_dataframes({"people": real})

    @so.observe(kind="training", table="people")
    @flow
    def parallel() -> list[str]:
        def one(seed: int) -> str:
            synth = GaussianCopulaSynthesizer(metadata)
            fit(synth, people(100 + seed, seed))
            synth.sample(num_rows=seed + 1)
            return str(synth._synthesizer_id)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(contextvars.copy_context().run, one, seed) for seed in range(8)]
            return [f.result() for f in futures]

    ids = parallel()
    fitted = so.HealthStore(str(store_dir)).read(names.MODELS).set_index("model_id")
    assert sorted(fitted.index) == sorted(ids)
    assert sorted(fitted.fit_rows) == [100 + seed for seed in range(8)]
    assert so.HealthStore(str(store_dir)).read(names.FLOW_RUNS).rows.tolist() == [sum(s + 1 for s in range(8))]
