"""Method wrapping that disable undoes exactly, the import watcher, and the autolog setting.

These run in the main environment (no generator library): they use classes and a module written here.
The real libraries' wrapping is tested in tests/autolog/test_sdv_autolog.py (the sdv environment).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.autolog import Autolog
from prefect_synthobs.autolog.patching import ImportWatcher, Patches
from prefect_synthobs.config.settings import SynthObsSettings, parse_autolog


class Base:
    def fit(self, x: int) -> int:
        """Base fit."""
        return x + 1

    def sample(self, n: int) -> list[int]:
        return list(range(n))


class Child(Base):
    def sample(self, n: int) -> list[int]:  # its own
        return [0] * n


def _doubling(original: Any) -> Any:
    def wrapper(self: Any, *args: Any) -> Any:
        return original(self, *args) * 2

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _snapshot(*classes: type) -> dict[tuple[str, str], Any]:
    return {(c.__name__, k): v for c in classes for k, v in c.__dict__.items()}


def test_undo_puts_back_exactly_what_was_there() -> None:
    before = _snapshot(Base, Child)
    patches = Patches()
    assert patches.wrap(Child, "fit", _doubling)  # inherited: must be deleted again, not copied down
    assert patches.wrap(Child, "sample", _doubling)  # its own
    assert patches.wrap(Base, "fit", _doubling)
    assert not patches.wrap(Base, "fit", _doubling)  # twice: no second layer
    assert not patches.wrap(Base, "nothing_here", _doubling)
    assert Child().fit(1) == 4 and Base().fit(1) == 4 and Child().sample(2) == [0, 0, 0, 0]
    patches.undo()
    assert _snapshot(Base, Child) == before
    assert "fit" not in Child.__dict__
    assert Child().fit(1) == 2 and Base().fit(1) == 2 and Child().sample(2) == [0, 0]
    assert len(patches) == 0


def test_undo_leaves_someone_elses_later_replacement_alone(caplog: pytest.LogCaptureFixture) -> None:
    class Local:
        def fit(self) -> str:
            return "own"

    patches = Patches()
    patches.wrap(Local, "fit", _doubling)

    def theirs(self: Any) -> str:
        return "theirs"

    Local.fit = theirs  # type: ignore[method-assign]
    patches.undo()
    assert Local().fit() == "theirs"
    assert "replaced by someone else" in caplog.text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Base", "Child"]), st.sampled_from(["fit", "sample", "__setattr__"]))))
def test_any_sequence_of_wraps_is_undone_exactly(wraps: list[tuple[str, str]]) -> None:
    classes = {"Base": Base, "Child": Child}
    before = _snapshot(Base, Child)
    patches = Patches()
    for owner, name in wraps:
        patches.wrap(classes[owner], name, _doubling if name != "__setattr__" else (lambda original: original))
    patches.undo()
    assert _snapshot(Base, Child) == before


@pytest.fixture
def module_dir(tmp_path: Path) -> Any:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("synthobs_fake_lib")]:
        del sys.modules[name]


def test_a_module_imported_after_watching_is_handed_over_once_loaded(module_dir: Path) -> None:
    package = module_dir / "synthobs_fake_lib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        textwrap.dedent("""
        class Model:
            def fit(self, data):
                return len(data)
    """)
    )
    seen: list[str] = []
    watcher = ImportWatcher(lambda module: seen.append(module.__name__ + ":" + str(hasattr(module, "Model"))))
    watcher.watch(["synthobs_fake_lib.models"])
    try:
        assert seen == []
        module = importlib.import_module("synthobs_fake_lib.models")
        assert seen == ["synthobs_fake_lib.models:True"]  # after the module ran, not before
        assert type(module.__spec__.loader).__name__ != "_Loader"  # the real loader is named again
        importlib.reload(module)  # reloading works with the real loader
        assert module.Model().fit([1, 2]) == 2
    finally:
        watcher.close()
    assert watcher not in sys.meta_path


def test_a_module_already_imported_is_handed_over_at_once(module_dir: Path) -> None:
    (module_dir / "synthobs_fake_lib_early.py").write_text("X = 1\n")
    importlib.import_module("synthobs_fake_lib_early")
    seen: list[str] = []
    watcher = ImportWatcher(lambda module: seen.append(module.__name__))
    try:
        watcher.watch(["synthobs_fake_lib_early"])
        assert seen == ["synthobs_fake_lib_early"]
    finally:
        watcher.close()
        del sys.modules["synthobs_fake_lib_early"]


def test_a_callback_that_raises_costs_a_warning_not_the_import(
    module_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (module_dir / "synthobs_fake_lib_bad.py").write_text("Y = 2\n")

    def broken(module: Any) -> None:
        raise RuntimeError("boom")

    watcher = ImportWatcher(broken)
    watcher.watch(["synthobs_fake_lib_bad"])
    try:
        module = importlib.import_module("synthobs_fake_lib_bad")
        assert module.Y == 2
        assert "could not hook synthobs_fake_lib_bad" in caplog.text
    finally:
        watcher.close()
        del sys.modules["synthobs_fake_lib_bad"]


def test_a_missing_module_still_raises_module_not_found() -> None:
    watcher = ImportWatcher(lambda module: None)
    watcher.watch(["synthobs_no_such_module_anywhere"])
    try:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("synthobs_no_such_module_anywhere")
    finally:
        watcher.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        ("TRUE", "true"),
        ("off", "false"),
        ("", "false"),
        ("sdv", "sdv"),
        (" ctgan , SDV ", "ctgan,sdv"),
        ("sdv,ctgan,synthcity", "true"),
        (["synthcity"], "synthcity"),
        ([], "false"),
    ],
)
def test_the_autolog_setting_reads_booleans_and_library_lists(value: Any, expected: str) -> None:
    assert parse_autolog(value) == expected
    assert SynthObsSettings(autolog=value).autolog == expected


def test_an_unknown_library_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown library 'sdvv': choose from sdv, ctgan, synthcity"):
        parse_autolog("sdv,sdvv")


def test_the_environment_variable_turns_autolog_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_AUTOLOG", "false")
    assert SynthObsSettings().autolog_libraries() == frozenset()
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_AUTOLOG", "ctgan")
    assert SynthObsSettings().autolog_libraries() == frozenset({"ctgan"})


def test_enable_and_disable_win_over_the_setting_and_leave_nothing_behind() -> None:
    autolog = Autolog()
    meta_path = list(sys.meta_path)
    autolog.apply(SynthObsSettings(autolog="sdv"))
    assert autolog.active() == {"sdv"}
    assert autolog.enable("ctgan") == {"ctgan"}
    autolog.apply(SynthObsSettings(autolog="true"))  # the setting changes: code's choice still wins
    assert autolog.active() == {"ctgan"}
    autolog.disable()
    autolog.apply(SynthObsSettings(autolog="true"))
    assert autolog.active() == frozenset()
    assert sys.meta_path == meta_path  # every import watcher gone
    autolog.release()
    autolog.apply(SynthObsSettings(autolog="true"))
    assert autolog.active() == {"sdv", "ctgan", "synthcity"}
    autolog.release()
    assert sys.meta_path == meta_path
