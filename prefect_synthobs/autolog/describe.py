"""What autolog reads off a model and its data: shapes, hyperparameters, size. Pure, never raises.

- ``data_shape(data)``: rows and columns of what ``fit`` got (a DataFrame, a dict of table name to
  DataFrame as SDV 2.x takes, an array, a synthcity ``DataLoader``) and the table names it holds;
- ``parameters_json(model)``: the model's hyperparameters as JSON text (SDV's ``get_parameters()``,
  synthcity's ``get_args()``, else the ``__init__`` arguments kept on the object as ``name`` or
  ``_name``): string values and keys redacted (``telemetry.redaction.redact``), a secret-named field
  (``password``, ``token``, ``client_secret``...) redacted whatever it holds; cut to ``MAX_PARAMETERS_CHARS``;
- ``pickled_size(model)``: bytes of the fitted object pickled (cloudpickle, as SDV's ``save`` writes it),
  counted without holding them in memory;
- ``sampled_rows(result)``: rows per table of what ``sample`` returned.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from typing import Any

from prefect_synthobs.telemetry.redaction import is_secret_key, redact

REDACTED = "[REDACTED]"

MAX_PARAMETERS_CHARS = 16_000
"""``models.parameters`` is cut to this many characters (then it ends with a note, and is not JSON)."""


def _frame_shape(data: Any) -> tuple[int, int] | None:
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple) and len(shape) >= 1 and all(isinstance(v, int) for v in shape):
        return int(shape[0]), int(shape[1]) if len(shape) > 1 else 1
    return None


def data_shape(data: Any) -> tuple[int | None, int | None, list[str]]:
    """``(rows, columns, table names)`` of what a ``fit`` got; ``None`` where it cannot tell."""
    try:
        if isinstance(data, Mapping):
            shapes = {str(name): _frame_shape(frame) for name, frame in data.items()}
            known = [s for s in shapes.values() if s is not None]
            if not known:
                return None, None, list(shapes)
            return sum(r for r, _ in known), sum(c for _, c in known), list(shapes)
        shape = _frame_shape(data)
        if shape is None and callable(getattr(data, "dataframe", None)):  # synthcity's DataLoader
            shape = _frame_shape(data.dataframe())
        if shape is None:
            return None, None, []
        return shape[0], shape[1], []
    except Exception:
        return None, None, []


def sampled_rows(result: Any) -> dict[str | None, int]:
    """Rows per table of a ``sample`` result: a frame (table ``None``), a dict of frames (SDV 2.x and
    multi-table), a synthcity ``DataLoader``; empty when it holds no table."""
    try:
        if isinstance(result, Mapping):
            out: dict[str | None, int] = {}
            for name, frame in result.items():
                shape = _frame_shape(frame)
                if shape is not None:
                    out[str(name)] = shape[0]
            return out
        shape = _frame_shape(result)
        if shape is None and callable(getattr(result, "dataframe", None)):
            shape = _frame_shape(result.dataframe())
        return {} if shape is None else {None: shape[0]}
    except Exception:
        return {}


def _json_safe(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):  # a secret-named field is redacted whatever its value; keys are text too
        return {
            redact(str(k)): REDACTED if is_secret_key(str(k)) and v is not None else _json_safe(v, depth + 1)
            for k, v in list(value.items())[:200]
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v, depth + 1) for v in list(value)[:200]]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _json_safe(item(), depth + 1)
        except Exception:
            pass
    return redact(repr(value)[:200])


def _init_arguments(model: Any) -> dict[str, Any]:
    """The ``__init__`` arguments a model kept as ``name`` or ``_name`` (ctgan's CTGAN and TVAE do)."""
    try:
        names = [
            p.name
            for p in inspect.signature(type(model).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return {}
    own = getattr(model, "__dict__", {})
    out: dict[str, Any] = {}
    for name in names:
        for attribute in (name, f"_{name}"):
            if attribute in own:
                out[name] = own[attribute]
                break
    return out


def parameters(model: Any) -> dict[str, Any]:
    """The model's hyperparameters (see the module docstring); empty when none can be read."""
    for method in ("get_parameters", "get_args"):
        getter = getattr(model, method, None)
        if callable(getter):
            try:
                value = getter()
            except Exception:
                continue
            if isinstance(value, Mapping):
                return dict(value)
    return _init_arguments(model)


def parameters_json(model: Any) -> str | None:
    """``parameters(model)`` as JSON text (redacted, cut to ``MAX_PARAMETERS_CHARS``); ``None`` on failure."""
    try:
        text = json.dumps(_json_safe(parameters(model)), sort_keys=True)
    except Exception:
        return None
    if len(text) > MAX_PARAMETERS_CHARS:
        return text[: MAX_PARAMETERS_CHARS - 40] + f" ... [cut: {len(text)} characters]"
    return text


class _CountingSink:
    """A file that only counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        self.size += n
        return n


def pickled_size(model: Any) -> int | None:
    """Bytes of ``model`` pickled with cloudpickle (what SDV's ``save`` writes); ``None`` when it does not pickle."""
    try:
        import cloudpickle  # type: ignore[import-untyped]  # Prefect's dependency

        sink = _CountingSink()
        cloudpickle.dump(model, sink)
        return sink.size
    except Exception:
        return None
