"""Autolog: generator libraries recorded with no code inside observed runs.

On by default (the ``autolog`` setting: ``true``, ``false`` or a comma list of ``sdv``, ``ctgan``,
``synthcity``; env ``PREFECT_INTEGRATIONS_SYNTHOBS_AUTOLOG``). When synthobs installs in a process (an
``observe`` decoration, a worker running an observed flow's task), autolog wraps the chosen libraries'
public methods (``fit``, ``sample``) as they are imported, before or after synthobs. Inside an observed
flow or task run each fit then writes a ``models`` row, its epochs as they end, a ``training.fit`` span
and a progress artifact; each sample counts its rows toward the run and opens a ``generation.sample``
span. Outside an observed run the wrappers only call through.

``enable(libraries)`` and ``disable()`` switch it in code; ``disable`` puts every wrapped attribute back
exactly as it was (and keeps autolog off until ``enable``, whatever the setting says).

Integrations: ``autolog.sdv`` (SDV 1.x and 2.x synthesizers), ``autolog.ctgan`` (CTGAN and TVAE, live
epochs), ``autolog.synthcity`` (synthcity plugins, live epochs through its callback API).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import ModuleType

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.autolog import ctgan as _ctgan
from prefect_synthobs.autolog import sdv as _sdv
from prefect_synthobs.autolog import synthcity as _synthcity
from prefect_synthobs.autolog.health import TrainingAlert, TrainingGates, TrainingHealthError
from prefect_synthobs.autolog.patching import ImportWatcher, Patches
from prefect_synthobs.config.active import ACTIVE
from prefect_synthobs.config.settings import SynthObsSettings, autolog_libraries
from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION

__all__ = [
    "AUTOLOG",
    "Autolog",
    "TrainingAlert",
    "TrainingGates",
    "TrainingHealthError",
    "active_libraries",
    "disable",
    "enable",
]

logger = get_logger("autolog")

Integration = tuple[tuple[str, ...], Callable[[Patches, ModuleType], None]]
INTEGRATIONS: dict[str, Integration] = {
    "sdv": (_sdv.MODULES, _sdv.install),
    "ctgan": (_ctgan.MODULES, _ctgan.install),
    "synthcity": (_synthcity.MODULES, _synthcity.install),
}
"""Each library autolog knows: the modules whose import it watches, and what it wraps in each."""
assert set(INTEGRATIONS) == set(catalog.AUTOLOG_LIBRARIES)


class Autolog:
    """Which libraries are wrapped in this process, and the wrapping itself (undone exactly)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._patches: dict[str, Patches] = {}
        self._watchers: dict[str, ImportWatcher] = {}
        self._forced: frozenset[str] | None = None
        """Libraries chosen in code (``enable``/``disable``): they win over the setting."""

    def active(self) -> frozenset[str]:
        """The libraries being recorded."""
        with self._lock:
            return frozenset(self._patches)

    def apply(self, settings: SynthObsSettings) -> None:
        """Record what the ``autolog`` setting says (unless ``enable``/``disable`` chose in code)."""
        with self._lock:
            wanted = self._forced if self._forced is not None else settings.autolog_libraries()
            self._switch(wanted)

    def enable(self, libraries: str | Iterable[str] | None = None) -> frozenset[str]:
        with self._lock:
            wanted = autolog_libraries(True if libraries is None else libraries)
            self._forced = wanted
            self._switch(wanted)
            return self.active()

    def disable(self) -> None:
        with self._lock:
            self._forced = frozenset()
            self._switch(frozenset())

    def release(self) -> None:
        """Undo every wrapping and forget choices made in code (``uninstall``; tests)."""
        with self._lock:
            self._switch(frozenset())
            self._forced = None

    def _switch(self, wanted: frozenset[str]) -> None:
        for library in sorted(set(self._patches) - wanted):
            self._watchers.pop(library).close()
            self._patches.pop(library).undo()
        for library in sorted(wanted - set(self._patches)):
            modules, install = INTEGRATIONS[library]
            patches = Patches()
            self._patches[library] = patches
            watcher = ImportWatcher(lambda module, p=patches, i=install: i(p, module))  # type: ignore[misc]
            self._watchers[library] = watcher
            watcher.watch(modules)


AUTOLOG = Autolog()
"""The process's autolog."""


def enable(libraries: str | Iterable[str] | None = None) -> frozenset[str]:
    """Record these generator libraries (default: all autolog knows) from now on, whatever the setting.

    Args:
        libraries: ``"sdv"``, ``"sdv,ctgan"``, a list of names, or ``None`` for all.

    Returns:
        The libraries now recorded.

    Raises:
        ValueError: A library autolog does not know.
    """
    return AUTOLOG.enable(libraries)


def disable() -> None:
    """Stop recording generator libraries: every wrapped method is put back exactly as it was."""
    AUTOLOG.disable()


def active_libraries() -> frozenset[str]:
    """The generator libraries autolog records in this process now."""
    return AUTOLOG.active()


def _apply_current(settings: SynthObsSettings) -> None:
    if INSTRUMENTATION.installed:
        AUTOLOG.apply(settings)


INSTRUMENTATION.add_install_hook(AUTOLOG.apply, AUTOLOG.release)
ACTIVE.on_change(_apply_current)
