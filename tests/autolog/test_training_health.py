"""Training health checks: nan_loss, divergence, plateau and slow_epoch on real numbers, the
``fail`` policy's error, and the ``synthobs.training.*`` events read back from the test server."""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import numpy as np
import pytest
from prefect import flow
from prefect.context import FlowRunContext

from conftest import wait_for_events, warnings_with
from prefect_synthobs import catalog as names
from prefect_synthobs.autolog.health import (
    WARMUP_EPOCHS,
    TrainingAlert,
    TrainingGates,
    TrainingHealthError,
    TrainingMonitor,
    emit_training_alert,
)
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.config.settings import SynthObsSettings

NAN, INF = math.nan, math.inf


def feed(
    monitor: TrainingMonitor, series: dict[str, Sequence[float]], seconds: Sequence[float | None] | None = None
) -> list[TrainingAlert]:
    """Observe epochs 0..n-1 of ``series`` (one list per loss type); every alert returned."""
    out: list[TrainingAlert] = []
    for epoch in range(len(next(iter(series.values())))):
        took = seconds[epoch] if seconds is not None else None
        out += monitor.observe(epoch, {k: v[epoch] for k, v in series.items()}, took)
    return out


def ctgan_trace(seed: int, epochs: int = 300) -> tuple[list[float], list[float]]:
    """A CTGAN-like loss trace: generator and discriminator loss per epoch.

    Calibrated on real ``ctgan.CTGAN`` 0.12.1 fits (CPU, 300–2,000 rows of mixed columns,
    200–300 epochs, seeds 0–4): the generator loss starts near 1.1 and sinks to about
    -0.4…-1.3, with autocorrelated noise of standard deviation 0.09–0.15 around its trend;
    the discriminator (WGAN-GP critic) loss swings around zero with standard deviation
    0.1–0.2, changing sign on 115–133 of 300 epochs, extremes -0.5…+0.6. The noise here is
    heavier-tailed (Student t, 5 degrees of freedom) than the real fits'.
    """
    rng = np.random.default_rng(seed)

    def ar1(sigma: float, phi: float) -> np.ndarray:
        shocks = rng.standard_t(5, epochs) * sigma * math.sqrt(3 / 5) * math.sqrt(1 - phi**2)
        out, previous = np.empty(epochs), 0.0
        for i in range(epochs):
            previous = phi * previous + shocks[i]
            out[i] = previous
        return out

    t = np.arange(epochs)
    generator = 1.3 - 2.0 / (1 + np.exp(-(t - 110) / 45)) + ar1(0.14, 0.3)
    discriminator = ar1(0.18, 0.15)
    return generator.tolist(), discriminator.tolist()


def checks(alerts: Sequence[TrainingAlert]) -> list[tuple[str, int, str | None]]:
    return [(a.check, a.epoch, a.loss_type) for a in alerts]


# -- gates --------------------------------------------------------------------------------------


def test_gates_default_to_the_settings_defaults() -> None:
    assert TrainingGates() == TrainingGates.from_settings(SynthObsSettings())
    assert TrainingGates() == TrainingGates("warn", None, 1e-4, None, 2.0, None)


def test_gates_from_settings_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    values: dict[str, Any] = {"policy": "stop", "plateau_epochs": 7, "min_delta": 0.01, "divergence_epochs": 3}
    values |= {"divergence_factor": 1.5, "max_epoch_seconds": 2.5}
    settings = SynthObsSettings(**{f"training_{key}": value for key, value in values.items()})
    assert TrainingGates.from_settings(settings) == TrainingGates(**values)
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_TRAINING_POLICY", "fail")
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_TRAINING_PLATEAU_EPOCHS", "12")
    so_settings.reset()
    try:
        gates = TrainingGates.from_settings(so_settings.get_settings())
    finally:
        so_settings.reset()
    assert (gates.policy, gates.plateau_epochs) == ("fail", 12)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"policy": "halt"}, "policy"),
        ({"plateau_epochs": 0}, "plateau_epochs"),
        ({"divergence_epochs": 2.5}, "divergence_epochs"),
        ({"divergence_epochs": True}, "divergence_epochs"),
        ({"min_delta": -1e-3}, "min_delta"),
        ({"min_delta": NAN}, "min_delta"),
        ({"divergence_factor": 0}, "divergence_factor"),
        ({"max_epoch_seconds": 0}, "max_epoch_seconds"),
        ({"max_epoch_seconds": INF}, "max_epoch_seconds"),
    ],
)
def test_invalid_gates_are_refused_by_name(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=f"invalid training gates: {named} must be"):
        TrainingGates(**kwargs)  # type: ignore[arg-type]


# -- nan_loss -----------------------------------------------------------------------------------


def test_nan_loss_is_always_on_and_trips_once_per_loss_type() -> None:
    monitor = TrainingMonitor(TrainingGates())
    alerts = feed(
        monitor,
        {"generator": [1.2, 0.9, NAN, NAN, 0.7, INF], "discriminator": [0.1, -0.2, 0.05, -INF, NAN, 0.0]},
    )
    assert checks(alerts) == [("nan_loss", 2, "generator"), ("nan_loss", 3, "discriminator")]
    generator, discriminator = alerts
    assert math.isnan(generator.value)  # type: ignore[arg-type]
    assert discriminator.value == -INF
    assert generator.message == (
        "Loss 'generator' is nan at epoch 2 (its best so far was 0.9 at epoch 1): the training broke down "
        "(a NaN or infinite loss does not recover by itself)."
    )
    assert "is -inf at epoch 3 (its best so far was -0.2 at epoch 1)" in discriminator.message


def test_nan_loss_at_the_first_epoch_and_a_fit_that_is_all_nan() -> None:
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=3, divergence_epochs=1))
    alerts = feed(monitor, {"loss": [NAN] * 8})
    # NaN is never a best, nor an improvement: every epoch counts toward the plateau
    assert checks(alerts) == [("nan_loss", 0, "loss"), ("plateau", 2, None)]
    assert "it had no finite value before" in alerts[0].message
    assert "bests: none (no finite loss)" in alerts[1].message


def test_a_nan_is_not_a_best() -> None:
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=1, divergence_factor=1.0))
    alerts = feed(monitor, {"loss": [1.0] * WARMUP_EPOCHS + [NAN, -INF, 2.5]})
    # best stays 1.0 (not -inf), scale |1.0|: 2.5 > 1.0 + 1 × 1.0 diverges
    assert checks(alerts) == [("nan_loss", 10, "loss"), ("divergence", 12, "loss")]
    assert "its best 1, at epoch 0" in alerts[1].message


# -- plateau ------------------------------------------------------------------------------------


def test_a_constant_loss_plateaus_after_n_epochs() -> None:
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=5))
    alerts = feed(monitor, {"loss": [0.42] * 20})
    assert checks(alerts) == [("plateau", 5, None)]  # epoch 0 sets the best, epochs 1-5 do not improve it
    assert alerts[0].value is None
    assert alerts[0].message == (
        "Training plateaued at epoch 5: no loss improved its best by more than 0.0001 × |best| for 5 epoch(s) "
        "since epoch 0 (training_plateau_epochs 5, training_min_delta 0.0001); bests: loss 0.42 (epoch 0)."
    )


def test_plateau_improvement_is_relative_to_the_best_s_size() -> None:
    gates = TrainingGates(plateau_epochs=3, min_delta=1e-3)
    # near 100, a 0.05 drop is 5e-4 of the best: not an improvement; near 0.01, a 5e-4 drop is 5%
    big = [100.0, 99.95, 99.90, 99.85]
    assert checks(feed(TrainingMonitor(gates), {"loss": big})) == [("plateau", 3, None)]
    small = [0.01, 0.0095, 0.009, 0.0085, 0.008]
    assert feed(TrainingMonitor(gates), {"loss": small}) == []
    # a drop of exactly min_delta × |best| is not "more than" (binary-exact numbers)
    exact = [1.0, 0.75, 0.5625, 0.421875]
    quarter = TrainingGates(plateau_epochs=3, min_delta=0.25)
    assert checks(feed(TrainingMonitor(quarter), {"loss": exact})) == [("plateau", 3, None)]
    assert feed(TrainingMonitor(quarter), {"loss": [1.0, 0.74, 0.55, 0.41]}) == []


def test_plateau_on_negative_gan_losses() -> None:
    gates = TrainingGates(plateau_epochs=2, min_delta=0.01)
    # -2.0 → -2.1 improves (lower), -2.1 → -2.0 does not; |best| sizes the step
    assert feed(TrainingMonitor(gates), {"generator": [-2.0, -2.1, -2.2, -2.4]}) == []
    alerts = feed(TrainingMonitor(gates), {"generator": [-2.0, -2.1, -2.0, -2.1]})
    assert checks(alerts) == [("plateau", 3, None)]
    assert "bests: generator -2.1 (epoch 1)" in alerts[0].message
    # across zero: the best's size is floored at 1e-8, so -1e-7 from 0 is an improvement
    assert feed(TrainingMonitor(gates), {"loss": [1.0, 0.0, -1e-7, -2e-7, -4e-7]}) == []


def test_one_improving_loss_keeps_the_plateau_away() -> None:
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=3))
    improving = [1.0 / (epoch + 1) for epoch in range(10)]
    assert feed(monitor, {"generator": [0.5] * 10, "discriminator": improving}) == []
    alerts = feed(monitor, {"generator": [0.5] * 3, "discriminator": [0.1] * 3})  # epochs 0-2 again
    assert checks(alerts) == [("plateau", 2, None)]
    assert "generator 0.5 (epoch 0), discriminator 0.1 (epoch 9)" in alerts[0].message
    assert "since epoch 9" in alerts[0].message


def test_epochs_without_losses_do_not_count_toward_a_plateau() -> None:
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=2))
    assert monitor.observe(0, {"loss": 1.0}, None) == []
    assert monitor.observe(1, {}, 0.1) == []
    assert monitor.observe(2, {}, 0.1) == []
    assert monitor.observe(3, {"loss": 1.0}, None) == []
    assert checks(monitor.observe(4, {"loss": 1.0}, None)) == [("plateau", 4, None)]


# -- divergence ---------------------------------------------------------------------------------


def descent_to(best: float) -> list[float]:
    """Eleven epochs from 1.0 down to ``best`` in equal steps (the warm-up, then one more)."""
    return [1.0 + (best - 1.0) * i / WARMUP_EPOCHS for i in range(WARMUP_EPOCHS + 1)]


def test_a_loss_that_blows_up_diverges() -> None:
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=3))
    # best 0.5 at epoch 10; its swing up to then: 1.0 - 0.5; scale max(0.5, 0.5): bound 0.5 + 2 × 0.5 = 1.5
    alerts = feed(monitor, {"loss": [*descent_to(0.5), 1.4, 1.6, 1.7, 1.5, 1.6, 1.7, 1.8, 9.0]})
    assert checks(alerts) == [("divergence", 17, "loss")]  # 1.5 is not above 1.5: the streak restarts at 15
    assert alerts[0].value == 1.8
    assert alerts[0].message == (
        "Loss 'loss' diverged at epoch 17: it is 1.8, and has stayed above 1.5 (its best 0.5, at epoch 10, "
        "plus 2 × its scale 0.5) for 3 epoch(s) in a row (training_divergence_epochs, "
        "training_divergence_factor)."
    )


def test_an_exploding_gan_loss_diverges_and_a_nan_ends_the_streak() -> None:
    generator, discriminator = ctgan_trace(seed=3, epochs=200)
    exploding = generator[:150] + [generator[149] + 1.5**k for k in range(1, 51)]
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=4))
    alerts = feed(monitor, {"generator": exploding, "discriminator": discriminator})
    assert [(a.check, a.loss_type) for a in alerts] == [("divergence", "generator")]
    tripped = alerts[0].epoch
    # it trips 3 epochs after the loss first went above best + 2 × scale, and not before the blow-up
    best, high = min(generator[:150]), max(generator[:150])
    bound = best + 2 * max(abs(best), high - best)
    first_above = next(i for i, v in enumerate(exploding) if i >= 150 and v > bound)
    assert tripped == first_above + 3
    interrupted = exploding[:]
    interrupted[first_above + 2] = NAN
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=4))
    alerts = feed(monitor, {"generator": interrupted, "discriminator": discriminator})
    assert checks(alerts) == [("nan_loss", first_above + 2, "generator"), ("divergence", first_above + 6, "generator")]


@pytest.mark.parametrize("seed", range(20))
def test_a_healthy_ctgan_trace_never_diverges_at_the_default_factor(seed: int) -> None:
    generator, discriminator = ctgan_trace(seed)
    assert np.mean(generator[:10]) > 0.9 and np.mean(generator[-30:]) < -0.3  # the generator loss crosses zero
    sign_changes = sum(1 for a, b in itertools.pairwise(discriminator) if (a < 0) != (b < 0))
    assert sign_changes > 100  # the critic's loss swings around zero
    for n in (2, 3, 5, 10):
        monitor = TrainingMonitor(TrainingGates(divergence_epochs=n))
        assert feed(monitor, {"generator": generator, "discriminator": discriminator}) == [], n


def test_the_first_epochs_teach_the_swing_of_a_loss_near_zero() -> None:
    # a critic loss that starts at its best, near zero, then swings: no divergence while it swings
    swings = [-0.03, 0.02, 0.06, 0.005, 0.1, 0.04, -0.06, 0.03, 0.05, 0.08, 0.13, 0.15, 0.18, 0.12]
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=1))
    assert feed(monitor, {"discriminator": swings}) == []
    # the same loss going to 0.6 and staying there does diverge: bound -0.06 + 2 × (0.1 + 0.06) = 0.26
    alerts = feed(TrainingMonitor(TrainingGates(divergence_epochs=2)), {"discriminator": [*swings, 0.6, 0.6]})
    assert checks(alerts) == [("divergence", 15, "discriminator")]
    assert "stayed above 0.26 (its best -0.06, at epoch 6, plus 2 × its scale 0.16)" in alerts[0].message


def test_a_loss_exploding_from_the_start_diverges_after_the_warm_up() -> None:
    doubling = [2.0**k for k in range(16)]
    alerts = feed(TrainingMonitor(TrainingGates(divergence_epochs=2)), {"loss": doubling})
    # warm-up swing 512 - 1; bound 1 + 2 × 511 = 1023: 1024 (epoch 10) and 2048 (epoch 11) are above
    assert checks(alerts) == [("divergence", 11, "loss")]


def test_divergence_trips_once_per_loss_type_and_the_factor_matters() -> None:
    up = [*descent_to(0.5), 1.6, 1.7, 1.8, 1.9]
    loose = TrainingGates(divergence_epochs=2, divergence_factor=4.0)
    assert feed(TrainingMonitor(loose), {"a": up}) == []  # bound 0.5 + 4 × 0.5 = 2.5
    monitor = TrainingMonitor(TrainingGates(divergence_epochs=2))
    alerts = feed(monitor, {"a": up, "b": [*descent_to(0.5), 1.0, 1.6, 1.7, 1.8]})
    assert checks(alerts) == [("divergence", 12, "a"), ("divergence", 13, "b")]


def test_a_monotonic_improvement_never_trips() -> None:
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=1, divergence_epochs=1, divergence_factor=0.01))
    assert feed(monitor, {"loss": [5.0 - 0.5 * epoch for epoch in range(100)]}) == []  # through zero and below


# -- slow_epoch, order, policy ----------------------------------------------------------------


def test_slow_epoch_trips_once_above_the_bound() -> None:
    monitor = TrainingMonitor(TrainingGates(max_epoch_seconds=1.0))
    alerts = feed(monitor, {"loss": [1.0, 0.9, 0.8, 0.7, 0.6]}, seconds=[0.5, 1.0, None, 1.5, 3.0])
    assert checks(alerts) == [("slow_epoch", 3, None)]
    assert alerts[0].value == 1.5
    assert alerts[0].message == "Epoch 3 took 1.5 s, more than the bound of 1 s (training_max_epoch_seconds)."
    assert feed(TrainingMonitor(TrainingGates()), {"loss": [1.0]}, seconds=[1e6]) == []  # off by default


def test_one_epoch_s_alerts_come_in_catalog_order() -> None:
    gates = TrainingGates(plateau_epochs=3, divergence_epochs=1, max_epoch_seconds=10.0)
    monitor = TrainingMonitor(gates)
    for epoch, a in enumerate([*descent_to(0.5), 0.6, 0.7]):  # a's best 0.5 at epoch 10, no improvement after
        assert monitor.observe(epoch, {"a": a, "b": 2.0}, 1.0) == []
    # epoch 13: b turns NaN, a climbs past 0.5 + 2 × 0.5, third epoch without improvement, 11 s
    alerts = monitor.observe(13, {"a": 1.7, "b": NAN}, 11.0)
    assert [a.check for a in alerts] == list(names.TRAINING_CHECKS)
    assert [a.loss_type for a in alerts] == ["b", "a", None, None]
    assert monitor.alerts == alerts
    # each check trips once per loss type: only a's NaN is new
    assert checks(monitor.observe(14, {"a": NAN, "b": NAN}, 99.0)) == [("nan_loss", 14, "a")]


def test_alerts_is_a_copy_and_should_stop_follows_the_policy() -> None:
    for policy, stops in (("warn", False), ("fail", False), ("stop", True)):
        monitor = TrainingMonitor(TrainingGates(policy=policy))  # type: ignore[arg-type]
        monitor.observe(0, {"loss": 1.0}, None)
        assert not monitor.should_stop
        monitor.observe(1, {"loss": NAN}, None)
        assert monitor.should_stop is stops
        monitor.alerts.clear()
        assert len(monitor.alerts) == 1


def test_observe_costs_microseconds() -> None:
    """A guard against work that grows with the fit (history kept and scanned), without a clock: the
    monitor's whole state after 20,000 epochs of two losses, every check on, is as big as after 100 (a few
    bytes for larger numbers), so each epoch costs the same whatever came before."""
    generator, discriminator = ctgan_trace(seed=1, epochs=20_000)
    monitor = TrainingMonitor(TrainingGates(plateau_epochs=10**6, divergence_epochs=10**6, max_epoch_seconds=1e9))
    sizes = {}
    for epoch in range(20_000):
        monitor.observe(epoch, {"generator": generator[epoch], "discriminator": discriminator[epoch]}, 0.01)
        if epoch in (99, 19_999):
            sizes[epoch] = len(pickle.dumps(monitor))
    assert sizes[19_999] <= sizes[99] + 32, sizes


# -- TrainingHealthError ------------------------------------------------------------------------


def test_training_health_error_lists_the_alerts_and_the_way_out() -> None:
    monitor = TrainingMonitor(TrainingGates(policy="fail", max_epoch_seconds=1.0))
    feed(monitor, {"generator": [1.0, NAN]}, seconds=[2.0, 0.1])
    error = TrainingHealthError(monitor.alerts, model="CTGANSynthesizer 'customers' (CTGANSynthesizer-1a2b)")
    assert isinstance(error, RuntimeError)
    assert error.alerts == monitor.alerts
    message = str(error)
    assert message.startswith(
        "training health check(s) tripped while fitting CTGANSynthesizer 'customers' (CTGANSynthesizer-1a2b): "
        "[slow_epoch] Epoch 0 took 2 s"
    )
    assert "[nan_loss] Loss 'generator' is nan at epoch 1" in message
    assert "PREFECT_INTEGRATIONS_SYNTHOBS_TRAINING_POLICY=warn" in message and "training_policy" in message
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        copy = loads(dumps(error))  # a failed task's exception crosses processes
        assert type(copy) is TrainingHealthError and str(copy) == message and copy.model == error.model
        assert checks(copy.alerts) == checks(error.alerts)


# -- events -------------------------------------------------------------------------------------

IDENTITY = {"library": "ctgan", "synthesizer": "CTGAN", "model_type": "ctgan"}


@pytest.mark.usefixtures("prefect_server")
def test_alert_event_reaches_the_server(store_dir: Path) -> None:
    model_id = f"CTGAN-{uuid.uuid4().hex[:12]}"
    alert = TrainingAlert("divergence", 41, "generator", 7.25, "Loss 'generator' diverged at epoch 41: ...")
    emit_training_alert(alert, model_id=model_id, table_name="customers", policy="warn", flow_run_id=None, **IDENTITY)
    events = wait_for_events("synthobs.training.divergence", resource_id=f"synthobs.model.{model_id}")
    assert len(events) == 1
    event = events[0]
    assert event.event == names.EVENT_TRAINING_PREFIX + "divergence"
    labels = {f"synthobs.{k}": v for k, v in IDENTITY.items()} | {"synthobs.table": "customers"}
    assert dict(event.resource.root) == {
        "prefect.resource.id": f"synthobs.model.{model_id}",
        "prefect.resource.name": "CTGAN (customers)",
        **labels,
        "synthobs.check": "divergence",
    }
    identity = {**IDENTITY, "model_id": model_id, "table": "customers"}
    assert event.payload == {
        **dict(check="divergence", epoch=41, loss_type="generator", value=7.25, message=alert.message, policy="warn"),
        **identity,
    }


@pytest.mark.usefixtures("prefect_server")
def test_alert_event_in_a_flow_run_relates_to_it(store_dir: Path) -> None:
    model_id = f"GaussianCopulaSynthesizer_2.0.0_{uuid.uuid4().hex}"

    sdv: dict[str, Any] = {"library": "sdv", "synthesizer": "GaussianCopulaSynthesizer", "model_type": None}

    @flow(name=f"training-alert-{model_id[-6:]}")
    def fit() -> str:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        run_id = str(ctx.flow_run.id)
        monitor = TrainingMonitor(TrainingGates(policy="stop"))
        monitor.observe(0, {"loss": 0.5}, None)
        for alert in monitor.observe(1, {"loss": INF}, None):
            emit_training_alert(alert, model_id=model_id, table_name=None, policy="stop", flow_run_id=run_id, **sdv)
        return run_id

    flow_run_id = fit()
    events = wait_for_events("synthobs.training.nan_loss", related_flow_run=flow_run_id)
    assert len(events) == 1
    event = events[0]
    assert event.resource.id == f"synthobs.model.{model_id}"
    assert dict(event.resource.root) == {
        "prefect.resource.id": f"synthobs.model.{model_id}",
        "prefect.resource.name": "GaussianCopulaSynthesizer",
        "synthobs.library": "sdv",
        "synthobs.synthesizer": "GaussianCopulaSynthesizer",
        "synthobs.check": "nan_loss",
    }  # no model type, no table: no labels for them
    assert event.payload["value"] == "inf" and event.payload["epoch"] == 1 and event.payload["policy"] == "stop"
    assert event.payload["loss_type"] == "loss" and event.payload["table"] is None
    related = [r.id for r in event.related]
    assert related.count(f"prefect.flow-run.{flow_run_id}") == 1


@pytest.mark.usefixtures("prefect_server")
def test_alert_event_texts_are_redacted(store_dir: Path) -> None:
    model_id = f"TVAE-{uuid.uuid4().hex[:12]}"
    alert = TrainingAlert("plateau", 9, None, None, "Training plateaued at epoch 9 (ann.lee@example.com)")
    emit_training_alert(
        alert, model_id=model_id, table_name="ann.lee@example.com", policy="fail", flow_run_id=None, **IDENTITY
    )
    events = wait_for_events("synthobs.training.plateau", resource_id=f"synthobs.model.{model_id}")
    assert len(events) == 1
    assert events[0].resource["synthobs.table"] == "[REDACTED]"
    assert events[0].payload["table"] == "[REDACTED]" and "example.com" not in events[0].payload["message"]
    assert events[0].payload["model_id"] == model_id and events[0].payload["value"] is None


def test_an_event_that_cannot_be_sent_costs_one_warning(store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    alert = TrainingAlert("slow_epoch", 3, None, 12.5, "Epoch 3 took 12.5 s, more than the bound of 10 s.")
    huge = "t" * 2_000_000  # over the server's 1.5 MB event limit: Prefect raises EventTooLarge
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        emit_training_alert(
            alert, model_id="m", table_name=huge, policy="warn", flow_run_id=None, **IDENTITY
        )  # no exception
    assert len(warnings_with(caplog, "training health event synthobs.training.slow_epoch not emitted")) == 1
