"""Properties of the training health monitor on generated loss traces, checked against an oracle
that recomputes every check from the whole history (no running state)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from prefect_synthobs import catalog as names
from prefect_synthobs.autolog.health import WARMUP_EPOCHS, TrainingAlert, TrainingGates, TrainingMonitor

LOSS_TYPES = ("generator", "discriminator")

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def walks(draw: st.DrawFn, length: int) -> list[float]:
    """A loss trace: a random walk (GAN-like swings, drops, blow-ups), some values NaN or ±inf."""
    value = draw(st.floats(min_value=-5, max_value=5))
    out = []
    for _ in range(length):
        step = draw(
            st.one_of(
                st.floats(min_value=-0.3, max_value=0.3),
                st.floats(min_value=-3, max_value=3),
                st.sampled_from([0.0, 10.0, -1e-5]),
            )
        )
        value = min(max(value + step, -1e3), 1e3)
        kind = draw(st.integers(0, 19))  # mostly the walk; now and then any number, or NaN / ±inf
        out.append(value if kind < 16 else draw(finite) if kind < 18 else draw(non_finite))
    return out


@st.composite
def fits(draw: st.DrawFn) -> tuple[TrainingGates, list[int], dict[str, list[float]], list[float | None]]:
    """Gates, epoch numbers (increasing, with gaps), per-loss traces, epoch seconds."""
    gates = TrainingGates(
        policy=draw(st.sampled_from(["warn", "fail", "stop"])),
        plateau_epochs=draw(st.none() | st.integers(1, 6)),
        min_delta=draw(st.sampled_from([0.0, 1e-4, 0.01, 0.5])),
        divergence_epochs=draw(st.none() | st.integers(1, 4)),
        divergence_factor=draw(st.sampled_from([0.1, 1.0, 2.0, 5.0])),
        max_epoch_seconds=draw(st.none() | st.sampled_from([0.5, 2.0])),
    )
    length = draw(st.integers(0, 40))
    start = draw(st.integers(0, 5))
    gaps = draw(st.lists(st.integers(1, 3), min_size=length, max_size=length))
    epochs = [start + sum(gaps[:i]) for i in range(length)]
    n_types = draw(st.integers(1, 2))
    series = {name: draw(walks(length)) for name in LOSS_TYPES[:n_types]}
    seconds = draw(st.lists(st.none() | st.floats(0, 3), min_size=length, max_size=length))
    return gates, epochs, series, seconds


def run(
    gates: TrainingGates, epochs: Sequence[int], series: dict[str, list[float]], seconds: Sequence[float | None]
) -> tuple[TrainingMonitor, list[tuple[int, list[TrainingAlert]]]]:
    monitor = TrainingMonitor(gates)
    returned = [
        (epoch, monitor.observe(epoch, {k: v[i] for k, v in series.items()}, seconds[i]))
        for i, epoch in enumerate(epochs)
    ]
    return monitor, returned


def oracle(
    gates: TrainingGates, epochs: Sequence[int], series: dict[str, list[float]], seconds: Sequence[float | None]
) -> set[tuple[str, int, str | None]]:
    """Every (check, epoch, loss type) the semantics in ``autolog/health.py``'s docstring trip, each
    computed from the history before that epoch (O(n²), no running state)."""
    tripped: dict[tuple[str, str | None], int] = {}

    def trip(check: str, loss_type: str | None, epoch: int) -> None:
        tripped.setdefault((check, loss_type), epoch)

    for name, values in series.items():
        streak = 0
        for i, value in enumerate(values):
            if not math.isfinite(value):
                trip("nan_loss", name, epochs[i])
                streak = 0
                continue
            prior = [v for v in values[:i] if math.isfinite(v)]
            if len(prior) < WARMUP_EPOCHS or gates.divergence_epochs is None:
                continue
            best = min(prior)
            best_at = prior.index(best)  # a best is replaced only by a strictly lower value: its first index
            swing = max(prior[: max(best_at, WARMUP_EPOCHS - 1) + 1]) - best
            scale = max(abs(best), swing, 1e-8)
            streak = streak + 1 if value > best + gates.divergence_factor * scale else 0
            if streak >= gates.divergence_epochs:
                trip("divergence", name, epochs[i])
    stale = 0
    for i, epoch in enumerate(epochs):
        improved = False
        for values in series.values():
            value = values[i]
            prior = [v for v in values[:i] if math.isfinite(v)]
            if math.isfinite(value) and (
                not prior or min(prior) - value > gates.min_delta * max(abs(min(prior)), 1e-8)
            ):
                improved = True
        stale = 0 if improved else stale + 1
        if gates.plateau_epochs is not None and stale >= gates.plateau_epochs:
            trip("plateau", None, epoch)
        seconds_i = seconds[i]
        if gates.max_epoch_seconds is not None and seconds_i is not None and seconds_i > gates.max_epoch_seconds:
            trip("slow_epoch", None, epoch)
    return {(check, epoch, loss_type) for (check, loss_type), epoch in tripped.items()}


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=300, deadline=None)
@given(fits())
def test_the_monitor_trips_exactly_what_the_semantics_say(
    fit: tuple[TrainingGates, list[int], dict[str, list[float]], list[float | None]],
) -> None:
    gates, epochs, series, seconds = fit
    monitor, _ = run(gates, epochs, series, seconds)
    for alert in monitor.alerts:
        event(alert.check)  # how often each check trips (pytest --hypothesis-show-statistics)
    assert {(a.check, a.epoch, a.loss_type) for a in monitor.alerts} == oracle(gates, epochs, series, seconds)


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=200, deadline=None)
@given(fits())
def test_alerts_carry_the_epoch_that_tripped_them_once_per_check_and_loss_type(
    fit: tuple[TrainingGates, list[int], dict[str, list[float]], list[float | None]],
) -> None:
    gates, epochs, series, seconds = fit
    monitor, returned = run(gates, epochs, series, seconds)
    for epoch, alerts in returned:
        assert all(alert.epoch == epoch for alert in alerts)
        order = [names.TRAINING_CHECKS.index(alert.check) for alert in alerts]
        assert order == sorted(order)
    assert monitor.alerts == [alert for _, alerts in returned for alert in alerts]
    keys = [(alert.check, alert.loss_type) for alert in monitor.alerts]
    assert len(keys) == len(set(keys))
    for alert in monitor.alerts:
        assert alert.check in names.TRAINING_CHECKS and alert.message
        assert (alert.loss_type is None) == (alert.check in ("plateau", "slow_epoch"))
        if alert.check == "nan_loss":
            assert alert.value is not None and not math.isfinite(alert.value)
        elif alert.check == "divergence":
            assert alert.value is not None and math.isfinite(alert.value)
    assert monitor.should_stop == (gates.policy == "stop" and bool(monitor.alerts))


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(min_value=-1e4, max_value=1e4),
    steps=st.lists(st.floats(min_value=1.01, max_value=100), min_size=1, max_size=60),
    min_delta=st.sampled_from([0.0, 1e-4, 1e-2]),
    plateau=st.integers(1, 5),
    divergence=st.integers(1, 5),
    factor=st.sampled_from([0.01, 1.0, 2.0]),
)
def test_a_loss_improving_by_more_than_min_delta_never_trips(
    start: float, steps: list[float], min_delta: float, plateau: int, divergence: int, factor: float
) -> None:
    """Each epoch lowers the loss by more than ``min_delta × max(|best|, 1e-8)`` (1.01 to 100 times it, or
    by 1e-6 at least): neither plateau nor divergence may trip, whatever the sign of the loss."""
    values = [start]
    for k in steps:
        best = values[-1]
        values.append(best - max(k * min_delta * max(abs(best), 1e-8), 1e-6 * k))
    gates = TrainingGates(
        plateau_epochs=plateau, min_delta=min_delta, divergence_epochs=divergence, divergence_factor=factor
    )
    monitor, _ = run(gates, range(len(values)), {"loss": values}, [None] * len(values))
    assert monitor.alerts == []


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=200, deadline=None)
@given(fits(), non_finite, st.sampled_from(LOSS_TYPES))
def test_a_trailing_nan_always_trips_nan_loss_at_that_epoch(
    fit: tuple[TrainingGates, list[int], dict[str, list[float]], list[float | None]], bad: float, which: str
) -> None:
    gates, epochs, series, seconds = fit
    clean = {name: [v if math.isfinite(v) else 0.5 for v in values] for name, values in series.items()}
    clean.setdefault(which, [1.0] * len(epochs))
    monitor, _ = run(gates, epochs, clean, seconds)
    assert [a for a in monitor.alerts if a.check == "nan_loss"] == []  # finite losses never trip it
    last = (epochs[-1] if epochs else 0) + 1
    alerts = monitor.observe(last, {**{name: 0.0 for name in clean}, which: bad}, None)
    nan_alerts = [a for a in alerts if a.check == "nan_loss"]
    assert [(a.epoch, a.loss_type) for a in nan_alerts] == [(last, which)]
    assert nan_alerts[0].value is not None and str(nan_alerts[0].value) == str(bad)
