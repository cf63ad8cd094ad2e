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
    assert extra <= {"opentelemetry-exporter-prometheus"}, f"pinned but not a declared floor: {extra}"
