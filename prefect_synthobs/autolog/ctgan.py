"""The ``ctgan`` package's ``CTGAN`` and ``TVAE``: fits, live epochs and samples.

CTGAN and TVAE have no callback, but both assign ``self.loss_values`` (a DataFrame) once right before
their epoch loop (empty) and once at the end of every epoch (the losses so far). Autolog watches that
assignment with a ``__setattr__`` on the two classes (undone exactly by ``disable``), so each epoch is
recorded the moment it ends, with its own time, from the library's public ``loss_values``:

- CTGAN: one row per epoch, ``Generator Loss`` and ``Discriminator Loss`` -> loss types ``generator``
  and ``discriminator``;
- TVAE: one row per batch, ``Loss`` -> loss type ``loss``, the mean over the epoch's batches.

SDV's ``CTGANSynthesizer``, ``TVAESynthesizer`` and ``CopulaGANSynthesizer`` train these classes inside
their own ``fit``: the epochs then count toward the SDV fit (its model id). Policy ``stop`` raises
``StopTraining`` from that assignment, after the epoch's losses are stored: ``fit`` returns normally and
the model samples with the epochs done so far.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

from prefect_synthobs.autolog.patching import Patches
from prefect_synthobs.autolog.session import StopTraining, active_fit, fit_session, sample_call, warn_once

LIBRARY = "ctgan"
MODULES = ("ctgan.synthesizers.ctgan", "ctgan.synthesizers.tvae")
"""The modules whose import autolog watches (each defines one class it wraps)."""

_SEEN_ATTRIBUTE = "_synthobs_loss_rows"
"""How many ``loss_values`` rows of this object were recorded (kept on the object during a fit)."""


def _loss_columns(frame: Any) -> tuple[list[Any], list[Any]]:
    """CTGAN's generator and discriminator loss columns (its empty frame's ``Distriminator Loss`` typo too)."""
    generator, discriminator = [], []
    for column in frame.columns:
        name = str(column).lower()
        if "generator" in name:
            generator.append(column)
        elif "discriminator" in name or "distriminator" in name:
            discriminator.append(column)
    return generator, discriminator


def _first_value(values: Any) -> float:
    """The first number of a row's matching columns; NaN when every one is missing (a diverged loss)."""
    for value in values:
        if value is None:
            continue
        number = float(value)
        if number == number:
            return number
    return math.nan


def _ctgan_epochs(frame: Any, start: int) -> list[tuple[int, dict[str, float]]]:
    """CTGAN's new epochs: ``(epoch, {"generator": g, "discriminator": d})`` for rows ``start`` on (each
    column's numpy array sliced to the new rows: this runs at every epoch's end, in a few µs)."""
    generator, discriminator = _loss_columns(frame)
    epochs = frame["Epoch"].to_numpy()[start:]
    parts = [
        (name, [frame[c].to_numpy()[start:] for c in columns])
        for name, columns in (("generator", generator), ("discriminator", discriminator))
        if columns
    ]
    return [
        (int(epoch), {name: _first_value(column[i] for column in columns) for name, columns in parts})
        for i, epoch in enumerate(epochs)
    ]


def _tvae_epochs(frame: Any, start: int) -> list[tuple[int, dict[str, float]]]:
    """TVAE's new epochs: ``(epoch, {"loss": mean over its batches})`` for rows ``start`` on."""
    epochs = frame["Epoch"].to_numpy()[start:]
    losses = frame["Loss"].to_numpy()[start:]
    out: list[tuple[int, dict[str, float]]] = []
    for epoch in dict.fromkeys(epochs.tolist()):
        values = [math.nan if v is None else float(v) for v in losses[epochs == epoch].tolist()]
        out.append((int(epoch), {"loss": math.fsum(values) / len(values)} if values else {}))
    return out


def _is_missing(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN
    except Exception:
        return False


def loss_values_set(model: Any, frame: Any, parse: Callable[[Any, int], list[tuple[int, dict[str, float]]]]) -> None:
    """``model.loss_values`` was just assigned ``frame``: a loop start (empty) or finished epochs."""
    session = active_fit()
    if session is None:
        return
    stop = False
    try:
        rows = len(frame) if frame is not None else 0
        if rows == 0:
            if _SEEN_ATTRIBUTE not in model.__dict__:  # the reset right before the loop; later ones change nothing
                model.__dict__[_SEEN_ATTRIBUTE] = 0
                session.training_loop_started()
            return
        seen = model.__dict__.get(_SEEN_ATTRIBUTE, 0)
        if rows < seen:
            seen = 0
        epochs = parse(frame, seen)
        model.__dict__[_SEEN_ATTRIBUTE] = rows
    except Exception as exc:
        warn_once(
            "ctgan-losses",
            "autolog could not read %s.loss_values (%s); epochs are not recorded",
            type(model).__name__,
            exc,
        )
        return
    for epoch, losses in epochs:
        stop = session.epoch_ended(epoch, losses) or stop
    if stop:
        raise StopTraining(f"training health policy 'stop' ended the fit after epoch {epochs[-1][0]}")


def _wrap_setattr(parse: Callable[[Any, int], list[tuple[int, dict[str, float]]]]) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            original(self, name, value)
            if name == "loss_values":
                loss_values_set(self, value, parse)

        __setattr__.__wrapped__ = original  # type: ignore[attr-defined]
        return __setattr__

    return make


def _planned_epochs(model: Any, kwargs: dict[str, Any]) -> int | None:
    value = kwargs.get("epochs")
    if value is None:
        own = getattr(model, "__dict__", {})
        value = own.get("_epochs", own.get("epochs"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _wrap_fit(original: Any) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = args[0] if args else kwargs.get("train_data")
        with fit_session(self, LIBRARY, data, planned_epochs=_planned_epochs(self, kwargs)):
            try:
                return original(self, *args, **kwargs)
            except StopTraining:
                return None
            finally:
                self.__dict__.pop(_SEEN_ATTRIBUTE, None)

    return fit


def _wrap_sample(original: Any) -> Any:
    @functools.wraps(original)
    def sample(self: Any, *args: Any, **kwargs: Any) -> Any:
        with sample_call(self, LIBRARY) as call:
            result = original(self, *args, **kwargs)
            if call is not None:
                call.value = result
            return result

    return sample


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap the class ``module`` defines (``CTGAN`` or ``TVAE``)."""
    if module.__name__ == "ctgan.synthesizers.ctgan":
        cls, parse = getattr(module, "CTGAN", None), _ctgan_epochs
    elif module.__name__ == "ctgan.synthesizers.tvae":
        cls, parse = getattr(module, "TVAE", None), _tvae_epochs
    else:
        return
    if not isinstance(cls, type):
        return
    patches.wrap(cls, "fit", _wrap_fit)
    patches.wrap(cls, "sample", _wrap_sample)
    patches.wrap(cls, "__setattr__", _wrap_setattr(parse))
