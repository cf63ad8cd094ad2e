"""Quality rows say which model made the synthetic table: ``model_id`` and ``model_type``, from
``model_identity`` (an SDV synthesizer's own id, an id kept on any other object, a string as given);
a store written before the columns existed still reads (nulls), through compaction and the report."""

from __future__ import annotations

import gc
import pickle
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect import flow

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.health.rows import quality_row
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import QUALITY_CHECKS
from prefect_synthobs.instrument import models as model_ids
from prefect_synthobs.instrument.models import MODEL_ID_ATTRIBUTE, model_identity
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.models import NO_MODEL

DAY = datetime(2026, 11, 18, 9, tzinfo=timezone.utc)
OLD_COLUMNS = ["event_id", "time", "flow_run_id", "flow_name", "table_name", "metric", "score", "threshold", "passed"]


class GaussianCopulaSynthesizer:
    """What SDV ≥ 1.x sets in ``BaseSynthesizer.__init__`` (``sdv._utils.generate_synthesizer_id``)."""

    def __init__(self) -> None:
        self._synthesizer_id = f"GaussianCopulaSynthesizer_1.17.0_{uuid.uuid4().hex}"


class CTGAN:
    """Any other model object: no id of its own."""


class Slotted:
    """Takes no new attributes (``__slots__``) but weak references."""

    __slots__ = ("__weakref__", "epochs")


class Sealed:
    """Takes neither new attributes nor weak references."""

    __slots__ = ("epochs",)


class Anything:
    """Answers every attribute name (a mock, a proxy): its answers are not ids."""

    def __getattr__(self, name: str) -> Any:
        return object()


# -- the columns --------------------------------------------------------------------------------


def test_quality_rows_carry_the_model_and_default_to_null() -> None:
    assert {"model_id", "model_type"} <= set(QUALITY_CHECKS.columns)
    assert QUALITY_CHECKS.schema.field("model_id").type == pa.string()
    row = quality_row(
        metric="overall",
        score=0.9,
        threshold=0.8,
        time=DAY,
        table_name="customers",
        flow_run_id="f",
        flow_name="q",
        model_id="CTGAN-0123456789ab",
        model_type="CTGAN",
    )
    assert (row["model_id"], row["model_type"]) == ("CTGAN-0123456789ab", "CTGAN")
    assert list(row) == QUALITY_CHECKS.schema.names
    bare = quality_row(
        metric="overall", score=0.9, threshold=None, time=DAY, table_name="t", flow_run_id=None, flow_name=None
    )
    assert (bare["model_id"], bare["model_type"]) == (None, None)


def _old_file(store_root: Path, rows: list[dict[str, Any]]) -> Path:
    """A ``quality_checks`` file as this package wrote it before the model columns (the old schema)."""
    old_schema = pa.schema([QUALITY_CHECKS.schema.field(c) for c in OLD_COLUMNS])
    directory = store_root / names.QUALITY_CHECKS / f"date={DAY:%Y-%m-%d}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"part-old-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in OLD_COLUMNS} for r in rows], schema=old_schema), path)
    return path


def _checks(n: int, model_id: str | None, model_type: str | None, score: float) -> list[dict[str, Any]]:
    return [
        quality_row(
            metric="overall",
            score=score,
            threshold=0.8,
            time=DAY + timedelta(minutes=k),
            table_name="customers",
            flow_run_id=f"f{k}",
            flow_name="q",
            model_id=model_id,
            model_type=model_type,
        )
        for k in range(n)
    ]


def test_a_store_written_before_the_model_columns_still_reads(tmp_path: Path) -> None:
    root = tmp_path / "store"
    old = _checks(3, None, None, 0.7)
    path = _old_file(root, old)
    assert "model_id" not in pq.read_schema(path).names  # really the old layout
    store = HealthStore(str(root))

    only_old = store.read(names.QUALITY_CHECKS)  # a store holding old files only
    assert len(only_old) == 3 and only_old.model_id.isna().all() and only_old.model_type.isna().all()
    assert list(only_old.score) == [0.7] * 3

    new = _checks(2, "CTGAN-0123456789ab", "CTGAN", 0.9)
    store.write(names.QUALITY_CHECKS, new)
    both = store.read(names.QUALITY_CHECKS, columns=["event_id", "model_id", "model_type", "score"])
    by_id = both.set_index("event_id")
    assert by_id.loc[[r["event_id"] for r in old], "model_id"].isna().all()
    assert list(by_id.loc[[r["event_id"] for r in new], "model_type"]) == ["CTGAN", "CTGAN"]

    # compaction merges the old file and the new one into one file of the new schema: nothing changes
    assert store.compact(names.QUALITY_CHECKS, before=DAY.date() + timedelta(days=1))["rows"] == 5
    files = list((root / names.QUALITY_CHECKS).rglob("*.parquet"))
    assert len(files) == 1 and "model_id" in pq.read_schema(files[0]).names
    after = store.read(names.QUALITY_CHECKS).set_index("event_id")
    assert after.loc[[r["event_id"] for r in old], "model_id"].isna().all()
    assert list(after.loc[[r["event_id"] for r in new], "model_id"]) == ["CTGAN-0123456789ab"] * 2

    # the report keeps them apart: the old rows are the table's "(no model)", never merged with the CTGAN
    report = hr.report_for(store, DAY - timedelta(hours=1), DAY + timedelta(hours=1), days=None)
    board = {r["model"]: r for r in report.models}
    assert set(board) == {NO_MODEL, "CTGAN"}
    assert (board[NO_MODEL]["checks"], board[NO_MODEL]["overall"]) == (3, 0.7)
    assert (board["CTGAN"]["checks"], board["CTGAN"]["overall"]) == (2, 0.9)


@pytest.mark.usefixtures("prefect_server")
def test_record_quality_writes_the_model_of_an_observed_run(store_dir: Path) -> None:
    copula, ctgan = GaussianCopulaSynthesizer(), CTGAN()

    @so.observe(kind="quality", table="customers")
    @flow(name="two-models")
    def check() -> None:
        so.record_quality("overall", 0.916, model=copula, threshold=0.8)
        so.record_quality("overall", 0.738, model=ctgan, threshold=0.8)
        so.record_quality("overall", 0.5, model="copula-v2")
        so.record_quality("overall", 0.6)

    check()
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    rows = so.HealthStore(str(store_dir)).read(names.QUALITY_CHECKS).sort_values("score")
    got = [(r.model_id, r.model_type, r.score) for r in rows.itertuples()]
    ctgan_id = getattr(ctgan, MODEL_ID_ATTRIBUTE)
    assert [(None if isinstance(i, float) else i, None if isinstance(t, float) else t, s) for i, t, s in got] == [
        ("copula-v2", None, 0.5),
        (None, None, 0.6),
        (ctgan_id, "CTGAN", 0.738),
        (copula._synthesizer_id, "GaussianCopulaSynthesizer", 0.916),
    ]
    with pytest.raises(ValueError, match="model id must be a non-empty string"):
        so.record_quality("overall", 0.5, model="")  # invalid input raises, as a bad score does


@pytest.mark.usefixtures("prefect_server")
def test_record_quality_redacts_a_secret_in_a_model_id(store_dir: Path) -> None:
    @so.observe(kind="quality", table="customers")
    @flow(name="secret-model-id")
    def check() -> None:
        so.record_quality("overall", 0.5, model="postgres://user:hunter2@db.example.com/x")
        so.record_quality("overall", 0.6, model="ctgan owner jane.doe@example.com")
        with pytest.raises(ValueError, match="not its class"):
            so.record_quality("overall", 0.7, model=CTGAN)

    check()
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    rows = so.HealthStore(str(store_dir)).read(names.QUALITY_CHECKS).sort_values("score")
    ids = [str(i) for i in rows.model_id]
    assert len(ids) == 2 and not any("hunter2" in i or "jane.doe" in i for i in ids), ids
    assert ids[0].startswith("postgres://") and "[REDACTED]" in ids[0]  # what is not secret stays readable


# -- model_identity ------------------------------------------------------------------------------


def test_none_and_strings() -> None:
    assert model_identity(None) == (None, None)
    assert model_identity("copula-v2") == ("copula-v2", None)
    for bad in ("", 3, 2.5, True, b"id"):
        with pytest.raises(ValueError):
            model_identity(bad)


def test_an_sdv_synthesizer_keeps_its_own_id() -> None:
    synth = GaussianCopulaSynthesizer()
    assert model_identity(synth) == (synth._synthesizer_id, "GaussianCopulaSynthesizer")
    assert not hasattr(synth, MODEL_ID_ATTRIBUTE)  # nothing added to an SDV object


def test_other_objects_get_a_stable_id_that_travels_with_them() -> None:
    a, b = CTGAN(), CTGAN()
    first = model_identity(a)
    assert first[1] == "CTGAN" and first[0] is not None and first[0].startswith("CTGAN-")
    assert len(first[0]) == len("CTGAN-") + 12
    assert model_identity(a) == first and model_identity(a) == first  # stable
    assert model_identity(b)[0] != first[0]  # distinct
    assert model_identity(pickle.loads(pickle.dumps(a))) == first  # a saved and loaded model is the same model


def test_an_object_answering_every_attribute_still_gets_a_text_id() -> None:
    thing = Anything()
    model_id, model_type = model_identity(thing)
    assert isinstance(model_id, str) and model_id.startswith("Anything-") and model_type == "Anything"
    assert model_identity(thing)[0] == model_id


def test_an_object_refusing_attributes_is_remembered_by_identity_until_collected() -> None:
    a, b = Slotted(), Slotted()
    first = model_identity(a)
    assert model_identity(a) == first and model_identity(b)[0] != first[0]
    key = id(a)
    assert key in model_ids._by_identity
    del a
    gc.collect()
    assert key not in model_ids._by_identity  # forgotten with the object: no leak, no stale id for a new object
    with pytest.raises(ValueError, match="pass the model's id as a string"):
        model_identity(Sealed())


def test_threads_seeing_an_object_first_at_once_agree_on_its_id() -> None:
    for _ in range(20):
        model, seen = CTGAN(), []
        barrier = threading.Barrier(8)

        def look(model: CTGAN = model, seen: list[Any] = seen, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            seen.append(model_identity(model)[0])

        threads = [threading.Thread(target=look) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen)) == 1 and len(seen) == 8


@given(kinds=st.lists(st.sampled_from(["plain", "slotted", "sdv", "text"]), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_ids_are_stable_per_object_and_distinct_between_objects(kinds: list[str]) -> None:
    made: list[Any] = []
    for k, kind in enumerate(kinds):
        made.append(
            {"plain": CTGAN, "slotted": Slotted, "sdv": GaussianCopulaSynthesizer}[kind]()
            if kind != "text"
            else f"model-{k}"
        )
    first = [model_identity(m) for m in made]
    assert [model_identity(m) for m in reversed(made)] == list(reversed(first))  # stable, in any order
    assert len({i for i, _ in first}) == len(made)  # one id per object
    for m, (model_id, model_type) in zip(made, first, strict=True):
        assert model_type == (None if isinstance(m, str) else type(m).__name__)
        if isinstance(m, str):
            assert model_id == m
