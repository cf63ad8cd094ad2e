"""SDV's synthesizers: fits and samples of single-table (GaussianCopula, CTGAN, TVAE, CopulaGAN),
multi-table (HMA) and sequential (PAR) synthesizers, SDV 1.x and 2.x.

Autolog wraps the public methods SDV's base classes define, which every synthesizer inherits:
``BaseSynthesizer.fit`` / ``fit_processed_data`` (``sdv.single_table.base``), the single-table
``sample`` / ``sample_from_conditions`` / ``sample_remaining_columns``, ``BaseMultiTableSynthesizer.fit`` /
``fit_processed_data`` / ``sample`` (``sdv.multi_table.base``) and ``PARSynthesizer.sample``
(``sdv.sequential.par``). The wrappers take SDV 1.x's frames and SDV 2.x's ``{table: frame}`` alike
(``describe.data_shape`` / ``sampled_rows``). The model id is SDV's own ``_synthesizer_id`` (what
``check_quality(model=synth)`` reads). Epochs of CTGAN, TVAE and CopulaGAN come from the ``ctgan``
classes SDV trains inside (``autolog.ctgan``), so the ``ctgan`` library must be autologged too for them
(it is by default).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from prefect_synthobs.autolog.patching import Patches
from prefect_synthobs.autolog.session import StopTraining, fit_session, sample_call

LIBRARY = "sdv"
MODULES = ("sdv.single_table.base", "sdv.multi_table.base", "sdv.sequential.par")

_FIT_METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "sdv.single_table.base": {"BaseSynthesizer": ("fit", "fit_processed_data")},
    "sdv.multi_table.base": {"BaseMultiTableSynthesizer": ("fit", "fit_processed_data")},
}
_SAMPLE_METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "sdv.single_table.base": {
        "BaseSingleTableSynthesizer": ("sample", "sample_from_conditions", "sample_remaining_columns")
    },
    "sdv.multi_table.base": {"BaseMultiTableSynthesizer": ("sample",)},
    "sdv.sequential.par": {"PARSynthesizer": ("sample",)},
}


def _table_name(model: Any) -> str | None:
    """A single-table synthesizer's table (SDV 2.x keeps ``_table_name``); ``None`` for others."""
    name = getattr(model, "__dict__", {}).get("_table_name")
    return name if isinstance(name, str) and name else None


def _planned_epochs(model: Any) -> int | None:
    epochs = getattr(model, "__dict__", {}).get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def _wrap_fit(original: Any) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = args[0] if args else next(iter(kwargs.values()), None)
        with fit_session(self, LIBRARY, data, planned_epochs=_planned_epochs(self), table_name=_table_name(self)):
            try:
                return original(self, *args, **kwargs)
            except StopTraining:  # a model SDV trains that autolog cannot stop inside: stop here
                return None

    return fit


def _wrap_sample(original: Any) -> Any:
    @functools.wraps(original)
    def sample(self: Any, *args: Any, **kwargs: Any) -> Any:
        with sample_call(self, LIBRARY, table_name=_table_name(self)) as call:
            result = original(self, *args, **kwargs)
            if call is not None:
                call.value = result
            return result

    return sample


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap the methods ``module`` defines (see the module docstring)."""
    for table, wrap in ((_FIT_METHODS, _wrap_fit), (_SAMPLE_METHODS, _wrap_sample)):
        for class_name, methods in table.get(module.__name__, {}).items():
            cls = getattr(module, class_name, None)
            if not isinstance(cls, type):
                continue
            for method in methods:
                if method in cls.__dict__:
                    patches.wrap(cls, method, wrap)
