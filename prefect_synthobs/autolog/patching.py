"""Method wrapping that ``disable`` undoes exactly, and a hook that runs when a module is imported.

``Patches`` replaces attributes of library classes (``CTGAN.fit``, SDV's ``BaseSynthesizer.fit``) with
wrappers and remembers what was there: whether the class had the attribute in its own ``__dict__`` and
the object it held. ``undo()`` puts back exactly that (an attribute the class only inherited is deleted
again, so the parent's is found as before), in reverse order. Wrappers keep ``__wrapped__`` and the
original's name and docstring (``functools.wraps``).

``ImportWatcher`` is a ``sys.meta_path`` finder that calls back after a watched module has been executed,
so a library imported after synthobs (inside a flow, on a worker) is patched as it arrives; a module
already imported is handled at once. The finder only looks at the names it watches, and never changes
how a module loads: it wraps the loader's ``exec_module`` to call back after it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from prefect_synthobs._log import get_logger

logger = get_logger("autolog")

_MISSING = object()


@dataclass(frozen=True)
class _Saved:
    owner: type
    name: str
    previous: Any  # the owner's own attribute before patching, or _MISSING when it only inherited one
    wrapper: Any


class Patches:
    """The attributes autolog replaced, each undone exactly (thread-safe)."""

    def __init__(self) -> None:
        self._saved: list[_Saved] = []
        self._lock = threading.RLock()
        self.active = True
        """``False`` once ``undo`` ran: a wrapper that could not be taken out (something wrapped the method
        again after autolog) then only calls through."""

    def wrap(self, owner: type, name: str, make: Callable[[Any], Any]) -> bool:
        """Replace ``owner.name`` by ``make(current)``; ``False`` (nothing changed) when ``owner`` has no
        such attribute or it is already patched here."""
        with self._lock:
            if any(s.owner is owner and s.name == name for s in self._saved):
                return False
            current = getattr(owner, name, _MISSING)
            if current is _MISSING:
                return False
            previous = owner.__dict__.get(name, _MISSING)
            recording: Callable[..., Any] = make(current)

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if self.active:
                    return recording(*args, **kwargs)
                return current(*args, **kwargs)  # type: ignore[operator]  # an attribute that was callable

            functools.update_wrapper(wrapper, recording)
            wrapper.__wrapped__ = current  # type: ignore[attr-defined]
            setattr(owner, name, wrapper)
            self._saved.append(_Saved(owner, name, previous, wrapper))
            return True

    def is_patched(self, owner: type, name: str) -> bool:
        with self._lock:
            return any(s.owner is owner and s.name == name for s in self._saved)

    def undo(self) -> None:
        """Put every replaced attribute back as it was, newest first."""
        with self._lock:
            self.active = False
            while self._saved:
                saved = self._saved.pop()
                try:
                    if saved.owner.__dict__.get(saved.name, _MISSING) is not saved.wrapper:
                        logger.warning(
                            "synthobs: %s.%s was replaced by someone else after autolog wrapped it; left as it is",
                            saved.owner.__qualname__,
                            saved.name,
                        )
                    elif saved.previous is _MISSING:
                        delattr(saved.owner, saved.name)
                    else:
                        setattr(saved.owner, saved.name, saved.previous)
                except Exception as exc:  # never let undoing one break undoing the others
                    logger.warning("synthobs: could not restore %s.%s (%s)", saved.owner.__qualname__, saved.name, exc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._saved)


class _Loader(importlib.abc.Loader):
    """The module's own loader, with a call back after it executed the module."""

    def __init__(self, inner: importlib.abc.Loader, after: Callable[[ModuleType], None]) -> None:
        self._inner = inner
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        # the module's spec must name its real loader again (pickle, importlib.reload, pkgutil read it)
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._inner
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._inner
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, get_code...: the real loader's
        return getattr(self._inner, name)


class ImportWatcher(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` once a watched module has been imported (now, if it already was)."""

    def __init__(self, callback: Callable[[ModuleType], None]) -> None:
        self._callback = callback
        self._names: set[str] = set()
        self._lock = threading.RLock()
        self._installed = False
        self._finding = threading.local()

    def watch(self, names: Sequence[str]) -> None:
        """Watch ``names`` (full module names); each already imported is handed to the callback now."""
        with self._lock:
            self._names.update(names)
            if not self._installed:
                sys.meta_path.insert(0, self)
                self._installed = True
        for name in names:
            module = sys.modules.get(name)
            if module is not None:
                self._safe_callback(module)

    def close(self) -> None:
        """Stop watching (the finder leaves ``sys.meta_path``)."""
        with self._lock:
            self._names.clear()
            if self._installed:
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(self)
                self._installed = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names or getattr(self._finding, "active", False):
            return None
        self._finding.active = True
        try:  # the spec the other finders would give: we only wrap its loader
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._finding.active = False
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, self._safe_callback)
        return spec

    def _safe_callback(self, module: ModuleType) -> None:
        try:
            self._callback(module)
        except Exception as exc:  # an autolog failure never breaks the user's import
            logger.warning("synthobs: autolog could not hook %s (%s); it is not recorded", module.__name__, exc)
