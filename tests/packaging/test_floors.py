"""scripts/floors.txt pins every run-time dependency at exactly the floor pyproject.toml declares.

scripts/wheel_check.sh installs the wheel with those pins (the floors job), so a floor raised or lowered in one
place and not the other is caught here, in the fast tier, before the slow job would test the wrong versions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

REPO = Path(__file__).resolve().parents[2]


def floors_file() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "scripts" / "floors.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"scripts/floors.txt: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    return pins


def declared_floors() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors: dict[str, str] = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if lower:
            floors[requirement.name.lower()] = lower[0]
    return floors


def same_release(pinned: str, floor: str) -> bool:
    """``16.0.0`` pins the floor ``16``; ``1.39.0`` the floor ``1.39``."""
    padded = floor.split(".") + ["0"] * (len(pinned.split(".")) - len(floor.split(".")))
    return pinned.split(".")[: len(padded)] == padded or pinned == floor


def test_every_declared_floor_is_pinned_at_exactly_that_version() -> None:
    pins = floors_file()
    for name, floor in declared_floors().items():
        assert name in pins, f"{name}>={floor} is declared but scripts/floors.txt does not pin it"
        if name == "nvidia-ml-py":  # 12 has no 12.0.0 release: its first is 12.535.77
            assert pins[name].startswith(floor + ".")
            continue
        assert same_release(pins[name], floor), f"{name}: floor {floor}, floors.txt pins {pins[name]}"


def test_floors_file_pins_nothing_undeclared_but_test_packages() -> None:
    extra = set(floors_file()) - set(declared_floors())
    test_only = {"opentelemetry-exporter-prometheus", "opentelemetry-instrumentation-system-metrics"}
    assert extra <= test_only, f"pinned but not a declared floor: {extra}"


def test_the_fastapi_cap_stays_while_the_prefect_floor_admits_releases_that_do_not_cap_it() -> None:
    """Prefect 3.7.5-3.8.8 require only ``fastapi<1``; pip then picks FastAPI 0.162+ for them, whose server does
    not start (``Body() got an unexpected keyword argument 'min_items'``; 0.151-0.154: 422 on the client's
    filtered reads). Prefect 3.9 caps FastAPI itself. The floors job of scripts/wheel_check.sh installs Prefect
    3.7.5 with what pip resolves: without this cap its demo fails. Drop the cap with a Prefect floor >= 3.9."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(text).name.lower(): Requirement(text) for text in project["dependencies"]}
    prefect_floor = declared_floors()["prefect"]
    if tuple(int(part) for part in prefect_floor.split(".")[:2]) < (3, 9):
        fastapi = requirements.get("fastapi")
        assert fastapi is not None, "fastapi<0.151 is needed while Prefect < 3.9 is admitted"
        assert not fastapi.specifier.contains("0.151.0") and fastapi.specifier.contains("0.150.0")
