"""synthcity's plugins: fits and generated rows of every plugin, live epochs of its GAN family.

- ``Plugin.fit`` / ``Plugin.generate`` (``synthcity.plugins.core.plugin``), which every plugin inherits:
  a ``models`` row per fit (model type: the plugin's ``name()``, e.g. ``ctgan``), rows counted per
  ``generate`` (it returns a ``DataLoader``);
- ``GAN._train_epoch`` (``synthcity.plugins.core.models.gan``), which the GAN-family plugins (``ctgan``,
  ``adsgan``, ``pategan``'s teacher-free parts, ...) call once per epoch and which returns the epoch's
  mean generator and discriminator losses: each epoch is recorded as it returns.

synthcity's ``Callback`` API (``on_epoch_end``) is only called by ``tabular_ddpm``; the VAE family
(``tvae``, ``rtvae``) trains in one method with no per-epoch seam, so their fits are recorded without
epochs. Policy ``stop`` cannot end a synthcity fit early (an exception out of its loop would skip the end
of ``fit`` and leave the plugin unfitted): there it acts as ``warn``.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

from prefect_synthobs.autolog.patching import Patches
from prefect_synthobs.autolog.session import active_fit, fit_session, sample_call

LIBRARY = "synthcity"
MODULES = ("synthcity.plugins.core.plugin", "synthcity.plugins.core.models.gan")


def _planned_epochs(plugin: Any) -> int | None:
    own = getattr(plugin, "__dict__", {})
    for name in ("n_iter", "generator_n_iter", "epochs"):
        value = own.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _wrap_fit(original: Any) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = args[0] if args else kwargs.get("X")
        with fit_session(self, LIBRARY, data, planned_epochs=_planned_epochs(self)):
            return original(self, *args, **kwargs)

    return fit


def _wrap_generate(original: Any) -> Any:
    @functools.wraps(original)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        with sample_call(self, LIBRARY) as call:
            result = original(self, *args, **kwargs)
            if call is not None:
                call.value = result
            return result

    return generate


def _wrap_train_epoch(original: Any) -> Any:
    @functools.wraps(original)
    def _train_epoch(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = active_fit()
        if session is not None and session.loop_started is None:
            session.training_loop_started()
        result = original(self, *args, **kwargs)
        if session is not None:
            epoch = session.epochs  # epochs recorded so far in this fit: the next one's 0-based number
            losses: dict[str, float] = {}
            if isinstance(result, tuple) and len(result) == 2:
                for name, value in zip(("generator", "discriminator"), result, strict=True):
                    try:
                        losses[name] = float(value)
                    except (TypeError, ValueError):
                        losses[name] = math.nan
            session.epoch_ended(epoch, losses)  # policy stop cannot act here: see the module docstring
        return result

    return _train_epoch


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap what ``module`` defines (see the module docstring)."""
    if module.__name__ == "synthcity.plugins.core.plugin":
        cls = getattr(module, "Plugin", None)
        if isinstance(cls, type):
            patches.wrap(cls, "fit", _wrap_fit)
            patches.wrap(cls, "generate", _wrap_generate)
    elif module.__name__ == "synthcity.plugins.core.models.gan":
        cls = getattr(module, "GAN", None)
        if isinstance(cls, type):
            patches.wrap(cls, "_train_epoch", _wrap_train_epoch)
