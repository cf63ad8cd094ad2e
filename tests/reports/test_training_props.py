"""Promises of the Training section and the loss curve, checked on generated rows (pure functions).

- Every ``models`` row of the window (and flow) is exactly one fit line with its status: none lost,
  none doubled; epochs recorded by hand are one line per flow run; epochs after a model's last fit
  row are one open line.
- Every epoch row is counted in the one line it belongs to (the first fit of its model ending at or
  after it), and each loss's final value is the one an independent computation finds.
- The same rows in any order give the same section.
- ``loss_curve_svg`` renders valid SVG for any losses (NaN, infinities, one epoch, long fits), one
  marker per epoch (or bucket of epochs) with a finite loss.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.reports.fits import TREND_EPOCHS, loss_trend
from prefect_synthobs.reports.training import MAX_CURVE_POINTS, build_training, loss_curve_svg

BASE = datetime(2026, 11, 20, tzinfo=timezone.utc)
# few minutes: epochs that end when a fit ends, and rows at one time, happen often
SINCE, UNTIL = BASE + timedelta(minutes=10), BASE + timedelta(minutes=25)
MODEL_IDS = ["m1", "m2", "m3"]
STATUSES = ["completed", "failed", "stopped", "RUNNING"]  # the last: another writer's word
RUNS = ["r1", "r2", "r3"]
FLOWS = ["f1", "f2"]
LOSSES = st.one_of(
    st.floats(-5, 5), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.none()
)  # None: a loss never given

fit = st.fixed_dictionaries(
    {
        "model_id": st.sampled_from([*MODEL_IDS, None]),
        "minute": st.integers(0, 30),
        "status": st.sampled_from(STATUSES),
        "table_name": st.sampled_from(["customers", "orders", None]),
        "flow_name": st.sampled_from(FLOWS),
        "flow_run_id": st.sampled_from(RUNS),
        "epochs": st.one_of(st.none(), st.integers(0, 10)),
    }
)
epoch = st.fixed_dictionaries(
    {
        "model_id": st.sampled_from([*MODEL_IDS, "m4", None]),  # m4: epochs of a fit with no row yet
        "minute": st.integers(0, 30),
        "epoch": st.integers(0, 8),
        "loss_type": st.sampled_from(["generator", "discriminator", "loss", None]),
        "loss": LOSSES,
        "flow_name": st.sampled_from(FLOWS),
        "flow_run_id": st.sampled_from(RUNS),
    }
)


def frames(fits: list[dict[str, Any]], epochs: list[dict[str, Any]], flow: str | None) -> tuple[Any, ...]:
    """The rows as ``load_frames`` reads them, as records and frames: fits up to ``until`` (every flow),
    epochs of the flow up to ``until``."""
    fit_rows = [
        {**f, "time": BASE + timedelta(minutes=f["minute"]), "model_type": "ctgan"}
        for f in fits
        if BASE + timedelta(minutes=f["minute"]) < UNTIL
    ]
    epoch_rows = [
        {**e, "time": BASE + timedelta(minutes=e["minute"]), "epoch_seconds": 1.0}
        for e in epochs
        if BASE + timedelta(minutes=e["minute"]) < UNTIL and (flow is None or e["flow_name"] == flow)
    ]
    models = pd.DataFrame(fit_rows, columns=[*fit.wrapped_strategy.mapping, "time", "model_type"])  # type: ignore[attr-defined]
    rows = pd.DataFrame(epoch_rows, columns=[*epoch.wrapped_strategy.mapping, "time", "epoch_seconds"])  # type: ignore[attr-defined]
    runs = pd.DataFrame({"flow_run_id": RUNS, "table_name": ["t1", "t2", None], "rows": [10, 0, None]})
    runs["duration_s"] = [2.0, 1.0, None]
    return fit_rows, epoch_rows, models, rows, runs


def expected_lines(
    fit_rows: list[dict[str, Any]], epoch_rows: list[dict[str, Any]], flow: str | None
) -> dict[Any, list[dict[str, Any]]]:
    """Line key → its epoch rows, found by brute force (an independent computation of the rules)."""
    shown: dict[Any, list[dict[str, Any]]] = {
        (m["model_id"], m["time"].isoformat()): []
        for m in fit_rows
        if SINCE <= m["time"] < UNTIL and (flow is None or m["flow_name"] == flow)
    }
    open_rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in epoch_rows:
        if r["model_id"] is None:
            if r["time"] >= SINCE:
                out[("hand", r["flow_run_id"])].append(r)
            continue
        later = [m for m in fit_rows if m["model_id"] == r["model_id"] and m["time"] >= r["time"]]
        if later:
            first = min(later, key=lambda m: m["time"])
            key = (first["model_id"], first["time"].isoformat())
            if key in shown:
                shown[key].append(r)
        else:
            open_rows[r["model_id"]].append(r)
    out.update(shown)
    for model_id, mine in open_rows.items():
        if any(r["time"] >= SINCE for r in mine):
            out[("open", model_id)] = mine
    return out


def key_of(row: dict[str, Any]) -> Any:
    if row["status"] is not None:
        return (row["model_id"], row["time"])
    return ("open", row["model_id"]) if row["model_id"] is not None else ("hand", row["flow_run_id"])


def finals(mine: list[dict[str, Any]]) -> dict[str, tuple[int, int, float | None]]:
    """Loss type → (epochs with a finite loss, epochs without, the last finite loss), each epoch's value
    the latest row's (at one time: a finite loss over none, the larger)."""
    chosen: dict[tuple[str, int], tuple[Any, ...]] = {}
    for r in mine:
        if r["loss_type"] is None:
            continue
        value = r["loss"] if r["loss"] is not None and math.isfinite(r["loss"]) else None
        rank = (r["time"], value is not None, value or 0.0)
        key = (r["loss_type"], r["epoch"])
        if key not in chosen or rank >= chosen[key][0]:
            chosen[key] = (rank, value)
    out = {}
    for loss_type in {k[0] for k in chosen}:
        values = {e: v for (t, e), (_rank, v) in chosen.items() if t == loss_type}
        finite = [e for e, v in values.items() if v is not None]
        out[loss_type] = (len(finite), len(values) - len(finite), values[max(finite)] if finite else None)
    return out


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@given(
    fits=st.lists(fit, max_size=12, unique_by=lambda f: (f["model_id"], f["minute"])),
    epochs=st.lists(epoch, max_size=40),
    flow=st.sampled_from([None, "f1"]),
    seed=st.integers(0, 2**31),
)
@settings(max_examples=150, deadline=None)
def test_no_fit_lost_or_doubled_and_every_epoch_in_its_fit(
    fits: list[dict[str, Any]], epochs: list[dict[str, Any]], flow: str | None, seed: int
) -> None:
    fit_rows, epoch_rows, models, rows, runs = frames(fits, epochs, flow)
    training = build_training(models, rows, runs, SINCE, UNTIL, flow_name=flow, redact_pii=False)

    # every models row of the window (and flow) is one line with its status: none lost, none doubled
    in_window = [m for m in fit_rows if SINCE <= m["time"] < UNTIL and (flow is None or m["flow_name"] == flow)]
    assert Counter((r["model_id"], r["time"], r["status"]) for r in training.fits if r["status"] is not None) == (
        Counter((m["model_id"], m["time"].isoformat(), m["status"]) for m in in_window)
    )
    want = expected_lines(fit_rows, epoch_rows, flow)
    got = {key_of(r): r for r in training.fits}
    assert len(got) == len(training.fits) == len(want)  # one line per fit, hand run and open model
    assert set(got) == set(want)

    # every epoch row is counted in its line: per loss type, its epochs, missing losses and last loss
    by_label = {(r["table"], r["model"]): key_of(r) for r in training.fits}
    assert len(by_label) == len(training.fits)  # names are unique within a table
    losses: dict[Any, dict[str, tuple[int, int, float | None]]] = defaultdict(dict)
    for r in training.losses:
        losses[by_label[(r["table"], r["model"])]][r["loss"]] = (r["epochs"], r["nonfinite"], r["final"])
    for key, mine in want.items():
        expected = finals(mine)
        assert losses.get(key, {}) == {
            t: (n, bad, None if last is None else round(last, 6)) for t, (n, bad, last) in expected.items()
        }, key
        row = got[key]
        assert row["nonfinite_losses"] == sum(bad for _n, bad, _last in expected.values())
        if row["status"] is None:  # no fit row: the epochs recorded
            assert row["epochs"] == (len({r["epoch"] for r in mine}) or None)
        if key[0] == "hand":
            assert row["table"] == {"r1": "t1", "r2": "t2"}.get(key[1])  # its flow run's table
            assert row["run_rows_per_s"] == (5.0 if key[1] == "r1" else None)

    # per table: every line counted once
    assert sum(t["fits"] for t in training.tables) == len(training.fits)
    for t in training.tables:
        assert t["fits"] == t["completed"] + t["failed"] + t["stopped"] + t["other"] + t["no_fit_row"]

    # the same rows in any order: the same section
    again = build_training(
        models.sample(frac=1.0, random_state=seed % 2**32).reset_index(drop=True),
        rows.sample(frac=1.0, random_state=(seed + 1) % 2**32).reset_index(drop=True),
        runs,
        SINCE,
        UNTIL,
        flow_name=flow,
        redact_pii=False,
    )
    assert again == training


def test_loss_trend_compares_with_five_epochs_earlier_else_the_first() -> None:
    points = [(e, 10.0 - e) for e in range(12)]
    trend = loss_trend(points[::-1])  # any order
    assert (trend["final"], trend["final_epoch"], trend["vs_epoch"], trend["reference"]) == (-1.0, 11, 6, 4.0)
    assert trend["change"] == -5.0 and trend["arrow"] == "↓" and TREND_EPOCHS == 5
    gap = loss_trend([(0, 1.0), (3, 2.0), (9, 3.0)])  # epochs 4..8 missing: the latest at or before 4
    assert (gap["vs_epoch"], gap["change"], gap["arrow"]) == (3, 1.0, "↑")
    short = loss_trend([(0, 1.0), (2, 1.0005)])  # within 0.1 %: flat
    assert (short["vs_epoch"], short["arrow"]) == (0, "→")
    assert loss_trend([(4, 0.5)]) == {
        "final": 0.5,
        "final_epoch": 4,
        "reference": None,
        "vs_epoch": None,
        "change": None,
        "arrow": None,
    }
    assert loss_trend([])["final"] is None
    assert loss_trend([(0, 0.0), (1, 0.0)])["arrow"] == "→"


SVG = "{http://www.w3.org/2000/svg}"


def markers(svg: str) -> list[ET.Element]:
    return [e for e in ET.fromstring(svg).iter() if e.get("class") == "marker"]


def test_loss_curve_draws_each_finite_epoch_and_skips_nan() -> None:
    svg = loss_curve_svg(
        {"generator": [(e, 1.0 - 0.1 * e) for e in range(6)], "discriminator": [(0, 0.5), (1, math.nan), (2, 0.7)]},
        title="CTGAN <customers>",
    )
    root = ET.fromstring(svg)
    assert len(markers(svg)) == 6 + 2  # the NaN epoch has no point
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "CTGAN <customers>" in texts and "epoch" in texts and {"0", "5"} <= set(texts)
    assert {"generator", "discriminator"} <= set(texts)  # both in the legend
    assert len(list(root.iter(f"{SVG}polyline"))) == 1  # the discriminator's line breaks at the NaN

    one = loss_curve_svg({"loss": [(0, 2.0)]}, title="one epoch")
    assert len(markers(one)) == 1
    nothing = loss_curve_svg({"loss": [(0, math.nan), (1, math.inf)]}, title="diverged")
    assert markers(nothing) == [] and "no data" in nothing
    assert "no data" in loss_curve_svg({}, title="no losses")
    long = loss_curve_svg({"loss": [(e, 1.0 / (e + 1)) for e in range(1000)]}, title="long")
    assert len(markers(long)) == 112  # buckets of ceil(1000 / MAX_CURVE_POINTS) = 9 epochs: 112 of them
    # loss types named like quality scores of opposite directions still draw
    assert "(loss)" in loss_curve_svg({"overall": [(0, 1.0)], "exact_match_rate": [(0, 2.0)]}, title="t")
    assert "no data" in loss_curve_svg({"overall": [], "exact_match_rate": []}, title="t")


NAMES = st.sampled_from(["generator", "discriminator", "loss", "overall", "exact_match_rate", "\x1b[2J<b>&x"])


@given(
    losses=st.dictionaries(
        NAMES,
        st.lists(st.tuples(st.integers(0, 400), st.one_of(st.floats(), st.just(math.nan))), max_size=30),
        max_size=3,
    )
)
@settings(max_examples=120, deadline=None)
def test_loss_curve_always_renders_one_marker_per_finite_bucket(losses: dict[str, list[tuple[int, float]]]) -> None:
    svg = loss_curve_svg(losses, title="fit")
    ET.fromstring(svg)  # valid XML whatever the names and values
    epochs = {e for points in losses.values() for e, _ in points}
    if not epochs:
        assert "no data" in svg
        return
    first, last = min(epochs), max(epochs)
    step = max(1, math.ceil((last - first + 1) / MAX_CURVE_POINTS))
    expected = 0
    for points in losses.values():
        last_value = dict(points)  # a repeated epoch: its last pair
        expected += len({(e - first) // step for e, v in last_value.items() if math.isfinite(v)})
    assert len(markers(svg)) == expected


@pytest.mark.parametrize("bad", [[("x", 1.0)], [(math.nan, 1.0)], [(1.5, 1.0)], [(None, 1.0)], [(1,)]])
def test_loss_curve_ignores_points_without_an_epoch(bad: list[Any]) -> None:
    svg = loss_curve_svg({"loss": [*bad, (2, 0.5)]}, title="t")
    assert len(markers(svg)) == 1
