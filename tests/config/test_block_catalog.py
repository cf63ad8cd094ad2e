"""The Prefect UI's block catalog lists exactly synthobs' six block types.

A real Prefect server registers every block class in its process's block registry when it starts, and
``prefect block register -m prefect_synthobs`` registers the module's block classes. Neither may show an
internal base class (``_SettingsBlock`` once appeared in the UI with its developer docstring and a Create
button beside the six real blocks).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.utilities.dispatch import get_registry_for_type

import prefect_synthobs as so
from prefect_synthobs.blocks import BLOCKS

SIX = {
    "synthobs-config",
    "synthobs-otlp-exporter",
    "synthobs-metrics",
    "synthobs-health-store",
    "synthobs-quality-gates",
    "synthobs-privacy-budget",
}


def synthobs_block_classes() -> dict[str, type[Block]]:
    """Every block class of this package in Prefect's registry (what a server process registers at start)."""
    registry = get_registry_for_type(Block) or {}
    return {slug: cls for slug, cls in registry.items() if cls.__module__.startswith("prefect_synthobs")}


def test_the_registry_holds_the_six_block_types_and_no_base_class() -> None:
    assert so.SynthObsConfig is not None  # the package's blocks are imported
    assert set(synthobs_block_classes()) == SIX
    assert {block.get_block_type_slug() for block in BLOCKS} == SIX


def test_a_real_server_lists_exactly_the_six(prefect_server: str) -> None:
    # what `prefect block register -m prefect_synthobs` does, against the real server of the tests
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_synthobs"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with get_client(sync_client=True) as client:
        listed = {block_type.slug for block_type in client.read_block_types()}
    ours = {slug for slug in listed if slug.startswith("synthobs") or "settings" in slug}
    assert ours == SIX, f"the UI's block catalog shows {sorted(ours)}"
    assert "settingsblock" not in listed
    # the catalog shows each with its user-facing description, not a developer docstring
    with get_client(sync_client=True) as client:
        for slug in SIX:
            block_type = client.read_block_type_by_slug(slug)
            assert block_type.description and "_settings_keys" not in block_type.description


@pytest.mark.parametrize("slug", sorted(SIX))
def test_each_block_type_has_a_logo_and_docs(slug: str) -> None:
    cls = synthobs_block_classes()[slug]
    assert cls._logo_url and cls._documentation_url
