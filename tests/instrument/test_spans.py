"""so.span outside a run."""

from __future__ import annotations

import pytest

import prefect_synthobs as so


def test_span_outside_a_run_is_safe_and_validates_name() -> None:
    with so.span("generation.batch", batch_size=10, obj=object()) as s:
        assert s is not None
    with pytest.raises(ValueError), so.span(""):
        pass
