"""The wheel and source distribution a maintainer would publish: what they hold, their metadata, twine's check.

Built here with ``python -m build`` (an isolated build, as a publisher runs it). ``scripts/wheel_check.sh``
installs the same wheel into fresh environments at the declared floors and at the newest releases.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import prefect_synthobs

pytestmark = pytest.mark.slow  # builds in an isolated environment: ~5 s and the package index
tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], check=True, capture_output=True)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def requirement(text: str) -> tuple[str, SpecifierSet]:
    parsed = Requirement(text)
    return parsed.name.lower(), parsed.specifier


def sources(folder: str, package: str) -> set[str]:
    """The modules of a source folder as the wheel must name them (``flows/`` installs as ``sample_flows``)."""
    root = REPO / folder
    return {
        f"{package}/{path.relative_to(root).as_posix()}"
        for path in root.rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_the_wheel_holds_every_module_the_sample_flows_and_py_typed(dists: dict[str, Path]) -> None:
    names = wheel_names(dists["wheel"])
    expected = sources("prefect_synthobs", "prefect_synthobs") | sources("flows", "prefect_synthobs/sample_flows")
    assert expected - names == set(), "modules missing from the wheel (a new subpackage not in [tool.setuptools]?)"
    assert "prefect_synthobs/py.typed" in names
    assert "prefect_synthobs_plugin.py" in names  # the prefect.plugins entry point
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "flows/", "examples/"))]
    licenses = [n for n in names if re.search(r"\.dist-info/licenses/LICENSE$", n)]
    assert licenses, "the wheel carries no LICENSE"


def test_the_wheel_declares_its_version_dependencies_and_entry_points(dists: dict[str, Path]) -> None:
    meta = metadata(dists["wheel"])
    assert meta["Version"] == prefect_synthobs.__version__
    assert meta["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert meta["License-Expression"] == "Apache-2.0"
    core = {r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r}
    assert {requirement(r) for r in core} == {requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    classifiers = set(meta.get_all("Classifier") or [])
    tested = {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)}
    assert tested <= classifiers
    from trove_classifiers import classifiers as known  # what PyPI accepts at upload

    assert classifiers - known == set(), "PyPI would refuse these classifiers"
    with zipfile.ZipFile(dists["wheel"]) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(name).decode()
    assert "synthobs = prefect_synthobs.cli:main" in entry_points
    assert re.search(r"\[prefect\.collections\]\s+prefect_synthobs = prefect_synthobs", entry_points)
    assert re.search(r"\[prefect\.plugins\]\s+prefect_synthobs = prefect_synthobs_plugin", entry_points)


def test_the_sdist_holds_the_docs_a_packager_needs(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "examples/read_store.py",
        "flows/__init__.py",
    ):
        assert needed in names


def test_twine_accepts_both(dists: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_changelog_opens_with_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    first = re.search(r"^## \[?(\d+\.\d+\.\d+)\]?", changelog, flags=re.M)
    assert first, "CHANGELOG.md has no '## X.Y.Z' release heading"
    assert first.group(1) == prefect_synthobs.__version__, "bump CHANGELOG.md and _version.py together"
