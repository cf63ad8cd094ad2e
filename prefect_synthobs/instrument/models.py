"""Which model made a synthetic table: a stable id and a type for any synthesizer object.

Quality rows carry ``model_id`` and ``model_type`` so that two generators trained on the
same table (a copula and a CTGAN) are reported side by side, never averaged into one number.
``model_identity`` turns what a caller hands over (a synthesizer object, a model id, nothing)
into that pair:

- ``None``: ``(None, None)``, the model is not known;
- a string: that id, no type (the caller names its model: ``"copula-v2"``);
- an SDV synthesizer (SDV 1.x sets ``_synthesizer_id`` in ``BaseSynthesizer.__init__``:
  ``"GaussianCopulaSynthesizer_1.17.0_<32 hex>"``, kept when SDV saves and loads it): that id and
  its model type (``model_type_of``: ``gaussian_copula``; autolog's ``models`` rows say the same);
- any other object (``ctgan.CTGAN``, ``ctgan.TVAE``, a synthcity plugin): an id made on first sight,
  ``f"{ClassName}-{12 hex}"``, kept on the object as ``_synthobs_model_id`` (so it travels with a
  pickled model), or, for an object that refuses attributes, in a table keyed by the object's
  identity that forgets it when the object is collected; and its model type (a generator library's
  class in snake case, ``ctgan``; any other class: its name).

The same object always gets the same id (from any thread); two objects get two ids. A copy of an
object made after it got its id (``copy.deepcopy``) carries the id along, as SDV's own does.

Refused with a ``ValueError`` that says what to pass instead: a class (the fitted object is
meant), a DataFrame, Series or array (a swapped argument), a module or a function, an id
longer than ``MAX_MODEL_ID_LENGTH`` or with control characters, and an object whose attribute
lookups raise (a broken proxy). ``redacted_identity`` is what recording calls: a string id is
text a person typed, so it is redacted (``telemetry.redaction.redact``) like any other name
before it reaches a row, a span or an event.
"""

from __future__ import annotations

import functools
import numbers
import threading
import types
import uuid
import weakref
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.telemetry.redaction import redact_optional

MODEL_ID_ATTRIBUTE = "_synthobs_model_id"
"""The attribute ``model_identity`` keeps a made-up id in, on objects that take attributes."""
SDV_ID_ATTRIBUTE = "_synthesizer_id"
"""SDV ≥ 1.x: every synthesizer's own id (class, SDV version, a UUID4's 32 hex digits)."""

MAX_MODEL_ID_LENGTH = 256
"""The longest model id a caller may pass as a string (longer is refused: an id, not a document)."""

_NOT_MODELS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((type,), "a class: pass the fitted model object, not its class"),
    ((pd.DataFrame, pd.Series, np.ndarray), "data, not a model (were two arguments swapped?)"),
    ((types.ModuleType,), "a module: pass the fitted model object"),
    (
        (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial),
        "a function: pass the fitted model object, not one of its methods",
    ),
)
"""What ``model_identity`` refuses, each with the reason it gives."""

_lock = threading.RLock()  # re-entrant: a weak reference's callback can run in a collection inside the lock
# Objects that refuse attributes: id(object) -> (a weak reference to it, its model id). Keyed by
# identity, not by ``==``/hash: two equal models are still two models, and an unhashable one works.
_by_identity: dict[int, tuple[weakref.ref[Any], str]] = {}


LIBRARIES = {"sdv": "sdv", "ctgan": "ctgan", "synthcity": "synthcity"}
"""Top-level module of a class -> the generator library it belongs to (the ``models.library`` column)."""


def library_of(model: object) -> str | None:
    """The generator library ``model``'s class comes from (``sdv``, ``ctgan``, ``synthcity``), else ``None``."""
    module = getattr(type(model), "__module__", "") or ""
    return LIBRARIES.get(module.partition(".")[0])


def model_type_of(model: object) -> str:
    """A model type a person reads: for a generator library's class its name in snake case without the
    ``Synthesizer`` suffix (``GaussianCopulaSynthesizer`` -> ``gaussian_copula``, ``CTGAN`` -> ``ctgan``,
    a synthcity plugin: its ``name()``); for any other class its class name, as it is."""
    cls = type(model)
    library = library_of(model)
    if library is None:
        return cls.__name__
    if library == "synthcity":
        try:
            name = cls.name()  # type: ignore[attr-defined]  # synthcity plugins: a static name(), e.g. "ctgan"
        except Exception:
            name = None
        if isinstance(name, str) and name:
            return name
    return snake_case(cls.__name__.removesuffix("Synthesizer") or cls.__name__)


def snake_case(name: str) -> str:
    """``GaussianCopula`` -> ``gaussian_copula``, ``CopulaGAN`` -> ``copula_gan``, ``CTGAN`` -> ``ctgan``."""
    out: list[str] = []
    for i, ch in enumerate(name):
        boundary = name[i - 1].islower() or (i + 1 < len(name) and name[i + 1].islower())
        if ch.isupper() and i and boundary and name[i - 1] != "_":
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _new_id(model: object) -> str:
    return f"{type(model).__name__}-{uuid.uuid4().hex[:12]}"


def _own_attribute(model: object, name: str) -> Any:
    """``name`` from the object's own ``__dict__`` only: never a class attribute, never a
    ``__getattr__`` that answers every name (a mock, a proxy). An object whose lookups raise
    (a ``__getattribute__`` or a ``__dict__`` property that raises) is refused with ``ValueError``."""
    try:
        own = getattr(model, "__dict__", None)
        return dict.get(own, name) if isinstance(own, dict) else None
    except Exception as exc:
        raise ValueError(
            f"cannot read a model id from a {type(model).__name__} object (looking up its attributes raised "
            f"{type(exc).__name__}): pass the model's id as a string instead"
        ) from None


def _forget(key: int, reference: weakref.ref[Any]) -> None:
    """A collected object's entry goes (only its own: a new object may have the same ``id`` by now)."""
    with _lock:
        kept = _by_identity.get(key)
        if kept is not None and kept[0] is reference:
            del _by_identity[key]


def _kept_id(model: object) -> str:
    """The id this process gave ``model`` (made and kept now if it has none)."""
    existing = _own_attribute(model, MODEL_ID_ATTRIBUTE)
    if isinstance(existing, str) and existing:
        return existing
    with _lock:  # two threads seeing the object first at once must not give it two ids
        existing = _own_attribute(model, MODEL_ID_ATTRIBUTE)
        if isinstance(existing, str) and existing:
            return existing
        kept = _by_identity.get(id(model))
        if kept is not None and kept[0]() is model:
            return kept[1]
        model_id = _new_id(model)
        try:
            setattr(model, MODEL_ID_ATTRIBUTE, model_id)
        except Exception:  # __slots__, a frozen dataclass, a pydantic model: remember it here instead
            pass
        else:
            if _own_attribute(model, MODEL_ID_ATTRIBUTE) == model_id:
                return model_id
        key = id(model)
        try:
            reference = weakref.ref(model, functools.partial(_forget, key))
        except TypeError:
            raise ValueError(
                f"cannot keep a model id for a {type(model).__name__} object (it takes neither attributes nor "
                "weak references): pass the model's id as a string instead"
            ) from None
        _by_identity[key] = (reference, model_id)
        return model_id


def _checked_id(model: str) -> str:
    """A caller's string id as a plain ``str``, refused when empty, blank, too long or holding control characters."""
    text = str.__str__(model)  # a str subclass (numpy.str_) as plain text
    if not text.strip():
        raise ValueError("model id must be a non-empty string")
    if len(text) > MAX_MODEL_ID_LENGTH:
        raise ValueError(
            f"model id is {len(text)} characters long, more than {MAX_MODEL_ID_LENGTH}: pass a short name for the "
            "model (e.g. 'ctgan-2024-05-01')"
        )
    if not text.isprintable():
        raise ValueError(f"model id must hold no control characters (newlines, tabs), got {text[:40]!r}")
    return text


def model_identity(model: Any) -> tuple[str | None, str | None]:
    """``(model_id, model_type)`` for a synthesizer object, a model id or ``None``.

    Args:
        model: A synthesizer object (SDV, CTGAN, TVAE, synthcity, any object), the
            model's id as a string, or ``None`` (not known).

    Returns:
        ``(None, None)`` for ``None``; ``(model, None)`` for a string; an SDV
        synthesizer's ``_synthesizer_id`` and its model type; for any other object
        a stable id kept on it (``_synthobs_model_id``) and its model type
        (``model_type_of``: ``gaussian_copula`` for SDV's GaussianCopula, the class
        name for a class of no generator library).

    Raises:
        ValueError: An empty or blank string, one longer than ``MAX_MODEL_ID_LENGTH``
            or with control characters; a number, a boolean or bytes (a model id
            is text); a class, a DataFrame, Series or array, a module or a
            function (not a fitted model); an object that can keep no id (neither
            attributes nor weak references) or whose attribute lookups raise.
    """
    if model is None:
        return None, None
    try:
        return _object_identity(model)
    except ValueError:
        raise
    except Exception as exc:  # a __getattribute__, __class__, __setattr__ or __eq__ that raises: a clear refusal
        raise ValueError(
            f"cannot keep a model id for a {type(model).__name__} object ({type(exc).__name__} on it): pass the "
            "model's id as a string instead"
        ) from None


def _object_identity(model: object) -> tuple[str, str | None]:
    """``model_identity`` of anything but ``None``: a string id checked; refused kinds; SDV's own id; one kept here."""
    if isinstance(model, str):
        return _checked_id(model), None
    if isinstance(model, (bool, numbers.Number, bytes, bytearray)):
        raise ValueError(f"model must be a synthesizer object or a model id string, got {model!r:.80}")
    for kinds, reason in _NOT_MODELS:
        if isinstance(model, kinds):
            what = f"class {model.__name__}" if isinstance(model, type) else f"a {type(model).__name__}"
            raise ValueError(f"model is {reason}; got {what}")
    model_type = model_type_of(model)
    sdv_id = _own_attribute(model, SDV_ID_ATTRIBUTE)
    if isinstance(sdv_id, str) and sdv_id:
        return sdv_id, model_type
    return _kept_id(model), model_type


def redacted_identity(model: Any, *, enabled: bool) -> tuple[str | None, str | None]:
    """``model_identity(model)`` with a caller's string id redacted when ``enabled`` (the ``redact_pii``
    setting): an id someone typed can hold a connection string or an e-mail, and rows, span attributes
    and events keep it as given. Ids made here or by SDV (a class name and hex digits) come out as they are.

    Raises:
        ValueError: As ``model_identity``.
    """
    model_id, model_type = model_identity(model)
    return redact_optional(model_id, enabled=enabled), model_type
