"""Where ``HealthStore()`` without a URL goes: an explicit argument, never a module rebound at import.

The health layer cannot read settings (``[tool.importlinter]`` layers). Its ``HealthStore`` takes a
``default_location`` (default: ``$PREFECT_HOME/synthobs``); ``prefect_synthobs.HealthStore`` (the config
layer's ``ConfiguredHealthStore``) passes the configured store, read when each store is made.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

import prefect_synthobs as so
from conftest import task_rows
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.config.active import ConfiguredHealthStore
from prefect_synthobs.health import store as health_store
from prefect_synthobs.health.location import embedded_default_location

PACKAGE = Path(so.__file__).parent
ENV_STORE_URL = "PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL"


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No overrides, no store URL in the environment; reset again afterwards."""
    monkeypatch.delenv(ENV_STORE_URL, raising=False)
    so_settings.reset()
    yield
    so_settings.reset()


def test_the_public_health_store_is_the_configured_one() -> None:
    assert so.HealthStore is ConfiguredHealthStore and issubclass(so.HealthStore, health_store.HealthStore)
    assert "default_location" not in vars(health_store)  # nothing left for a layer above to rebind


def test_health_store_follows_configure_at_each_construction(tmp_path: Path, fresh_settings: None) -> None:
    so.configure(store_url=str(tmp_path / "first"))
    first = so.HealthStore()
    so.configure(store_url=str(tmp_path / "second"))
    assert first.url == str(tmp_path / "first") and so.HealthStore().url == str(tmp_path / "second")
    assert so.HealthStore(str(tmp_path / "named")).url == str(tmp_path / "named")  # a URL given wins
    so.HealthStore().write("task_runs", task_rows(2))
    assert health_store.HealthStore(str(tmp_path / "second")).count("task_runs") == 2


def test_health_store_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv(ENV_STORE_URL, str(tmp_path / "from-env"))
    so_settings.reset()
    assert so.HealthStore().url == str(tmp_path / "from-env")


def test_health_store_takes_the_configured_storage_options(fresh_settings: None) -> None:
    options = {"access_key": "key", "secret_key": "secret", "region": "us-east-1", "endpoint_override": "127.0.0.1:1"}
    so.configure(store_url="s3://bucket/synthobs", store_options=options)
    store = so.HealthStore()
    assert store.url == "s3://bucket/synthobs" and isinstance(store._fs, pafs.S3FileSystem)
    with pytest.raises(ValueError, match="storage options are for object stores"):
        so.HealthStore(storage_options={"region": "us-east-1"}, url="/tmp/local")  # given options are used as given


def test_the_health_layer_goes_where_its_default_location_says_and_nowhere_else(
    tmp_path: Path, fresh_settings: None
) -> None:
    so.configure(store_url=str(tmp_path / "configured"))
    there = health_store.HealthStore(default_location=lambda: (str(tmp_path / "there"), None))
    assert there.url == str(tmp_path / "there")
    # configure() reaches the health layer only through the argument: its own default stays the embedded store
    assert health_store.HealthStore().url == embedded_default_location()[0] != str(tmp_path / "configured")


def _module_aliases(tree: ast.Module, package: str) -> set[str]:
    """Names a module binds to modules of this package (``import a.b as m``, ``from a import b``)."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("prefect_synthobs")}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else ""
            base = base or node.module or ""
            if not base.startswith("prefect_synthobs"):
                continue
            for alias in node.names:
                try:
                    is_module = importlib.util.find_spec(f"{base}.{alias.name}") is not None
                except ModuleNotFoundError:
                    is_module = False
                if is_module:
                    aliases.add(alias.asname or alias.name)
    return aliases


def _writes_to_other_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """``module:line: alias.name`` for each assignment (or ``setattr``) to a name of another module of the
    package in ``source``, the text of ``module``."""
    tree = ast.parse(source)
    aliases = _module_aliases(tree, module if is_package else module.rpartition(".")[0])
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            targets = [ast.Attribute(value=node.args[0], attr="?")] if node.args else []
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id in aliases:
                found.append(f"{module}:{target.value.lineno}: {target.value.id}.{target.attr}")
    return found


def test_no_module_of_the_package_rebinds_another_modules_names() -> None:
    """The import-time rebinding (``config/active.py`` replacing ``health.store.default_location``) is gone,
    and no other module writes another's state that way."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = path.name == "__init__.py"
        module = ".".join(parts[:-1] if package else parts)
        found += _writes_to_other_modules(path.read_text(encoding="utf-8"), module, is_package=package)
    assert found == []


def test_the_rebinding_check_finds_a_rebinding() -> None:
    source = (
        "from prefect_synthobs.health import store as health_store\n"
        "from prefect_synthobs.health.store import HealthStore\n"
        "from .. import catalog\n"
        "HealthStore.url = 'a class of another module is not a module: not this check'\n"
        "health_store.default_location = lambda: ('/elsewhere', None)\n"
        "setattr(catalog, 'TABLES', ())\n"
    )
    found = _writes_to_other_modules(source, "prefect_synthobs.config.probe")
    assert [hit.split(": ", 1)[1] for hit in found] == ["health_store.default_location", "catalog.?"]
