"""Reading ctgan's ``loss_values`` frames (pure: runs in the main environment without ctgan)."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.autolog.ctgan import _ctgan_epochs, _tvae_epochs

LOSS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none())


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(LOSS, LOSS), min_size=1, max_size=30), typo=st.booleans(), data=st.data())
def test_every_new_ctgan_epoch_is_read_once_with_missing_losses_as_nan(
    rows: list[tuple[float | None, float | None]], typo: bool, data: st.DataObject
) -> None:
    """As ctgan builds it: one row per epoch; its first (empty) frame's typo'd column may remain beside
    the real one. A loss that is missing (None, NaN) is NaN, never dropped; infinities stay."""
    frame = pd.DataFrame(
        {
            "Epoch": range(len(rows)),
            "Generator Loss": [g for g, _ in rows],
            "Discriminator Loss": [d for _, d in rows],
        }
    )
    if typo:
        frame.insert(2, "Distriminator Loss", [None] * len(rows))
    start = data.draw(st.integers(0, len(rows) - 1))
    out = _ctgan_epochs(frame, start)
    assert [epoch for epoch, _ in out] == list(range(start, len(rows)))
    for epoch, losses in out:
        assert set(losses) == {"generator", "discriminator"}
        for name, given_value in zip(("generator", "discriminator"), rows[epoch], strict=True):
            got = losses[name]
            if given_value is None or math.isnan(given_value):
                assert math.isnan(got)
            else:
                assert got == float(given_value)


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5), min_size=1, max_size=8))
def test_a_tvae_epoch_is_the_mean_of_its_batches(batches: list[list[float]]) -> None:
    records = [(epoch, b, loss) for epoch, losses in enumerate(batches) for b, loss in enumerate(losses)]
    frame = pd.DataFrame(records, columns=["Epoch", "Batch", "Loss"])
    out = _tvae_epochs(frame, 0)
    assert [epoch for epoch, _ in out] == list(range(len(batches)))
    for (_, losses), given_losses in zip(out, batches, strict=True):
        assert math.isclose(losses["loss"], math.fsum(given_losses) / len(given_losses), rel_tol=1e-12, abs_tol=1e-9)
    last = len(records) - len(batches[-1])
    assert [epoch for epoch, _ in _tvae_epochs(frame, last)] == [len(batches) - 1]
