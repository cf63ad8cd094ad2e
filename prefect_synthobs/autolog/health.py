"""Training health: checks on each epoch's losses and time, and the Prefect events they raise.

A ``TrainingMonitor`` watches one fit. Autolog hands it each epoch as the epoch ends
(``observe(epoch, {"generator": 0.71, "discriminator": -0.12}, epoch_seconds)``) and it
answers with the alerts that epoch newly tripped. It is pure (no clock, no I/O: the caller
measures the epoch's seconds) and costs a few microseconds per epoch, so it runs on every
epoch of every fit.

The checks (``catalog.TRAINING_CHECKS``), each tripping at most once per fit and loss type:

- ``nan_loss`` (always on): a loss is NaN or ±inf. One alert per loss type, at the first
  epoch where it happens.
- ``divergence`` (``divergence_epochs`` N, ``divergence_factor`` f): a loss stays above
  ``best + f × scale`` for N epochs in a row. ``best`` is its lowest finite value so far;
  ``scale`` is the larger of ``|best|`` and how far the loss ranged (its highest minus its
  lowest finite value) up to its best's epoch, or up to its 10th finite value if that came
  later; at least 1e-8. Its first 10 finite values (``WARMUP_EPOCHS``) only teach the check
  how far it swings: divergence counts from the 11th. Measuring the distance in units of the
  loss's own size and swing makes the check hold for losses of any sign and magnitude: a
  CTGAN generator loss that starts at 1.1 and sinks below zero is not diverging, nor is a
  WGAN discriminator loss that swings around zero (real CTGAN fits of 200–300 epochs did
  not trip it at the default factor, even with N = 1; a lone spike can trip N = 1, so
  N ≥ 2 suits GANs); a loss that climbs more than f × scale above its best and stays
  there is. An epoch whose loss is not above the bound (or is not finite) ends the streak;
  an epoch that does not report the loss leaves it as it was. One alert per loss type.
- ``plateau`` (``plateau_epochs`` N, ``min_delta`` d): for N epochs in a row no loss type
  improved its best (its minimum so far) by more than ``d × max(|best|, 1e-8)``. The
  improvement is relative to the best's size, so it means the same for a loss near 100 and
  one near 0.01, and ``|best|`` handles negative (GAN) losses: going from -2.0 to -2.1 is
  an improvement. A loss type's first finite value counts as an improvement (the count
  starts after it). An epoch whose losses are all NaN counts as one without improvement;
  an epoch with no losses at all is not counted. One alert per fit (``loss_type`` None).
- ``slow_epoch`` (``max_epoch_seconds`` b): an epoch took more than b seconds. One alert
  per fit (``loss_type`` None).

Non-finite losses never count as an improvement, nor as a best, nor toward divergence.
Alerts of one epoch come in ``TRAINING_CHECKS`` order.

What a tripped check does is the policy's (``training_policy``; the fit session acts on
it): ``warn`` logs a warning and emits the Prefect event ``synthobs.training.<check>``
(``emit_training_alert``), which an Automation can act on; ``fail`` also raises
``TrainingHealthError`` when the fit ends; ``stop`` also ends the fit after the epoch that
tripped, where the library allows it (``TrainingMonitor.should_stop``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.config.settings import TrainingPolicy
from prefect_synthobs.instrument import prefect_api

if TYPE_CHECKING:
    from prefect_synthobs.config.settings import SynthObsSettings

logger = get_logger()

POLICIES: tuple[TrainingPolicy, ...] = get_args(TrainingPolicy)
WARMUP_EPOCHS = 10
"""A loss's first finite values that only teach the divergence check how far it swings."""
_TINY = 1e-8  # the least scale a loss's size counts as: a best of exactly 0 still has a bound
_ORDER = {check: i for i, check in enumerate(names.TRAINING_CHECKS)}
_NAN_LOSS, _DIVERGENCE, _PLATEAU, _SLOW_EPOCH = names.TRAINING_CHECKS


@dataclass(frozen=True)
class TrainingGates:
    """The training health checks' bounds and the policy for a tripped one (``None``: check off).

    ``nan_loss`` is always on. The defaults are the settings' defaults: only ``nan_loss`` on,
    policy ``warn``.
    """

    policy: TrainingPolicy = "warn"
    plateau_epochs: int | None = None
    min_delta: float = 1e-4
    divergence_epochs: int | None = None
    divergence_factor: float = 2.0
    max_epoch_seconds: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.policy not in POLICIES:
            problems.append(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        for name in ("plateau_epochs", "divergence_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                problems.append(f"{name} must be an integer >= 1 or None, got {value!r}")
        # the settings' own bounds (they refuse NaN and infinity too)
        if not _is_number(self.min_delta) or not self.min_delta >= 0:
            problems.append(f"min_delta must be a finite number >= 0, got {self.min_delta!r}")
        if not _is_number(self.divergence_factor) or not self.divergence_factor > 0:
            problems.append(f"divergence_factor must be a finite number > 0, got {self.divergence_factor!r}")
        if self.max_epoch_seconds is not None and (
            not _is_number(self.max_epoch_seconds) or not self.max_epoch_seconds > 0
        ):
            problems.append(f"max_epoch_seconds must be a finite number > 0 or None, got {self.max_epoch_seconds!r}")
        if problems:
            raise ValueError("invalid training gates: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: SynthObsSettings) -> TrainingGates:
        """The gates the ``training_*`` settings describe."""
        return cls(
            policy=settings.training_policy,
            plateau_epochs=settings.training_plateau_epochs,
            min_delta=settings.training_min_delta,
            divergence_epochs=settings.training_divergence_epochs,
            divergence_factor=settings.training_divergence_factor,
            max_epoch_seconds=settings.training_max_epoch_seconds,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainingAlert:
    """One training health check that tripped."""

    check: str
    """One of ``catalog.TRAINING_CHECKS``."""
    epoch: int
    """The epoch that tripped it (as the caller numbers epochs)."""
    loss_type: str | None
    """The loss that tripped it (``nan_loss``, ``divergence``); ``None`` for ``plateau`` and ``slow_epoch``."""
    value: float | None
    """The loss (``nan_loss``, ``divergence``) or the epoch's seconds (``slow_epoch``) that tripped it."""
    message: str
    """What tripped, at which epoch, the numbers and the bound, in a sentence."""


class _Loss:
    """What the monitor remembers of one loss type (``__slots__``: read on every epoch)."""

    __slots__ = ("above", "best", "best_epoch", "diverged", "high", "nan", "seen", "spread")

    def __init__(self) -> None:
        self.best = math.inf  # the lowest finite value so far (inf: none yet)
        self.best_epoch = -1
        self.high = -math.inf  # the highest finite value so far
        self.spread = 0.0  # high - best, as of its best's epoch or its last warm-up epoch
        self.seen = 0  # finite values seen, counted up to WARMUP_EPOCHS
        self.above = 0  # epochs in a row above the divergence bound
        self.nan = False  # nan_loss tripped
        self.diverged = False  # divergence tripped


class TrainingMonitor:
    """The training health checks of one fit, fed one epoch at a time (not thread-safe: one fit, one feeder)."""

    def __init__(self, gates: TrainingGates) -> None:
        self.gates = gates
        self._losses: dict[str, _Loss] = {}
        self._alerts: list[TrainingAlert] = []
        self._stale = 0  # epochs in a row (with losses) where no loss improved
        self._improved_epoch: int | None = None  # the last epoch where one did
        self._plateaued = False
        self._slow = False

    def observe(self, epoch: int, losses: Mapping[str, float], epoch_seconds: float | None) -> list[TrainingAlert]:
        """The alerts newly tripped by this epoch (each check trips at most once per fit per loss
        type; ``nan_loss`` is always on).

        Args:
            epoch: The epoch that just ended, numbered as the library numbers them.
            losses: Its losses by loss type (numbers; anything ``float()`` takes).
            epoch_seconds: How long it took (``None``: not measured; ``slow_epoch`` skips it).
        """
        gates = self.gates
        new: list[TrainingAlert] = []
        improved = False
        for loss_type, raw in losses.items():
            value = float(raw)
            state = self._losses.get(loss_type)
            if state is None:
                state = self._losses[loss_type] = _Loss()
            if not math.isfinite(value):
                state.above = 0
                if not state.nan:
                    state.nan = True
                    new.append(self._nan_alert(epoch, loss_type, value, state))
                continue
            if value > state.high:
                state.high = value
            best = state.best
            if value < best:
                # its first finite value, or lower than its best by more than min_delta × |best|
                if best == math.inf or best - value > gates.min_delta * max(abs(best), _TINY):
                    improved = True
                state.best, state.best_epoch, state.above = value, epoch, 0
                state.spread = state.high - value
                if state.seen < WARMUP_EPOCHS:
                    state.seen += 1
            elif state.seen < WARMUP_EPOCHS:  # still learning how far this loss swings
                state.seen += 1
                state.spread = state.high - best
            elif gates.divergence_epochs is not None and not state.diverged:
                scale = max(abs(best), state.spread, _TINY)
                if value > best + gates.divergence_factor * scale:
                    state.above += 1
                    if state.above >= gates.divergence_epochs:
                        state.diverged = True
                        new.append(self._divergence_alert(epoch, loss_type, value, state, scale))
                else:
                    state.above = 0
        if losses:
            if improved:
                self._stale, self._improved_epoch = 0, epoch
            else:
                self._stale += 1
                if gates.plateau_epochs is not None and self._stale >= gates.plateau_epochs and not self._plateaued:
                    self._plateaued = True
                    new.append(self._plateau_alert(epoch))
        bound = gates.max_epoch_seconds
        if bound is not None and epoch_seconds is not None and epoch_seconds > bound and not self._slow:
            self._slow = True
            new.append(
                TrainingAlert(
                    _SLOW_EPOCH,
                    epoch,
                    None,
                    float(epoch_seconds),
                    f"Epoch {epoch} took {epoch_seconds:.3g} s, more than the bound of {bound:g} s "
                    "(training_max_epoch_seconds).",
                )
            )
        if new:
            if len(new) > 1:
                new.sort(key=lambda alert: _ORDER[alert.check])
            self._alerts.extend(new)
        return new

    @property
    def alerts(self) -> list[TrainingAlert]:
        """Every alert tripped so far, in the order they tripped."""
        return list(self._alerts)

    @property
    def should_stop(self) -> bool:
        """Whether the fit should end now: the policy is ``stop`` and a check tripped."""
        return self.gates.policy == "stop" and bool(self._alerts)

    def _nan_alert(self, epoch: int, loss_type: str, value: float, state: _Loss) -> TrainingAlert:
        best = (
            f"its best so far was {state.best:.6g} at epoch {state.best_epoch}"
            if state.best_epoch >= 0
            else "it had no finite value before"
        )
        return TrainingAlert(
            _NAN_LOSS,
            epoch,
            loss_type,
            value,
            f"Loss {loss_type!r} is {value} at epoch {epoch} ({best}): the training broke down "
            "(a NaN or infinite loss does not recover by itself).",
        )

    def _divergence_alert(self, epoch: int, loss_type: str, value: float, state: _Loss, scale: float) -> TrainingAlert:
        gates = self.gates
        bound = state.best + gates.divergence_factor * scale
        return TrainingAlert(
            _DIVERGENCE,
            epoch,
            loss_type,
            value,
            f"Loss {loss_type!r} diverged at epoch {epoch}: it is {value:.6g}, and has stayed above {bound:.6g} "
            f"(its best {state.best:.6g}, at epoch {state.best_epoch}, plus {gates.divergence_factor:g} × its "
            f"scale {scale:.6g}) for {gates.divergence_epochs} epoch(s) in a row "
            "(training_divergence_epochs, training_divergence_factor).",
        )

    def _plateau_alert(self, epoch: int) -> TrainingAlert:
        gates = self.gates
        bests = ", ".join(
            f"{name} {state.best:.6g} (epoch {state.best_epoch})"
            for name, state in self._losses.items()
            if state.best_epoch >= 0
        )
        since = f" since epoch {self._improved_epoch}" if self._improved_epoch is not None else ""
        return TrainingAlert(
            _PLATEAU,
            epoch,
            None,
            None,
            f"Training plateaued at epoch {epoch}: no loss improved its best by more than {gates.min_delta:g} × "
            f"|best| for {self._stale} epoch(s){since} (training_plateau_epochs {gates.plateau_epochs}, "
            f"training_min_delta {gates.min_delta:g}); bests: {bests or 'none (no finite loss)'}.",
        )


def _rebuild_error(alerts: list[TrainingAlert], model: str) -> TrainingHealthError:
    return TrainingHealthError(alerts, model=model)


class TrainingHealthError(RuntimeError):
    """A fit tripped training health checks and the policy is ``fail`` (raised when the fit ends)."""

    def __init__(self, alerts: Sequence[TrainingAlert], *, model: str) -> None:
        self.alerts = list(alerts)
        self.model = model
        listed = " ".join(f"[{alert.check}] {alert.message}" for alert in self.alerts)
        super().__init__(
            f"training health check(s) tripped while fitting {model}: {listed} The training policy is 'fail': set "
            "training_policy to 'warn' (PREFECT_INTEGRATIONS_SYNTHOBS_TRAINING_POLICY=warn, or "
            "so.configure(training_policy='warn')) to record such alerts without failing the run, or to 'stop' "
            "to end the fit at the epoch that trips one."
        )

    def __reduce__(self) -> tuple[Any, tuple[list[TrainingAlert], str]]:
        # the default would call TrainingHealthError(message): a failed task's exception crosses processes
        return _rebuild_error, (self.alerts, self.model)


def _payload_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: those travel as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def emit_training_alert(
    alert: TrainingAlert,
    *,
    model_id: str,
    model_type: str | None,
    library: str,
    synthesizer: str,
    table_name: str | None,
    policy: str,
    flow_run_id: str | None,
) -> None:
    """Emit the Prefect event ``synthobs.training.<check>`` for ``alert``, for Automations.

    The resource is the model: ``synthobs.model.<model_id>``, named after its synthesizer
    class (and table), labelled ``synthobs.library``, ``synthobs.synthesizer``,
    ``synthobs.model_type``, ``synthobs.table`` and ``synthobs.check`` (absent when unknown);
    the flow run, when given, is a related resource. The payload holds ``check``, ``epoch``,
    ``loss_type``, ``value`` (a number, or ``"nan"``/``"inf"``/``"-inf"``), ``message``,
    ``policy`` and the model's identity. Texts pass PII redaction when ``redact_pii`` is on.
    Never raises: a failure costs one warning.
    """
    try:
        prefect_api.emit(
            names.EVENT_TRAINING_PREFIX + alert.check,
            resource_id=names.RESOURCE_MODEL_PREFIX + model_id,
            resource_name=f"{synthesizer} ({table_name})" if table_name else synthesizer,
            labels={
                names.ATTR_LIBRARY: library,
                names.ATTR_SYNTHESIZER: synthesizer,
                names.ATTR_MODEL_TYPE: model_type,
                names.ATTR_TABLE: table_name,
                names.ATTR_CHECK: alert.check,
            },
            payload={
                "check": alert.check,
                "epoch": alert.epoch,
                "loss_type": alert.loss_type,
                "value": _payload_number(alert.value),
                "message": alert.message,
                "policy": policy,
                "model_id": model_id,
                "model_type": model_type,
                "library": library,
                "synthesizer": synthesizer,
                "table": table_name,
            },
            flow_run_ids=[flow_run_id] if flow_run_id else [],
            redact_pii=get_settings().redact_pii,
        )
    except Exception as exc:
        logger.warning(
            "synthobs: training health event %s not emitted (%s: %.300s)",
            names.EVENT_TRAINING_PREFIX + alert.check,
            type(exc).__name__,
            exc,
        )
