"""How synthobs opens an S3 filesystem: one ``PutObject`` per flush on the calling thread (``allow_delayed_open``,
no background upload), large streamed files still uploading their parts in the background, and a pyarrow without
an option (``allow_delayed_open`` is new in pyarrow 17) still opening the store without it.

No server is needed: ``pyarrow.fs.S3FileSystem`` contacts none until a file is read or written, and its options
read back from ``__reduce__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health import files as store_files
from prefect_synthobs.health import location
from prefect_synthobs.health.files import StoreFiles
from prefect_synthobs.health.location import (
    OBJECT_STORE_WRITES,
    STREAMED_WRITES,
    resolve_filesystem,
    streaming_filesystem,
)

OPTIONS = {"access_key": "k", "secret_key": "s", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}


def _options(fs: pafs.FileSystem) -> dict[str, Any]:
    _, (options, *_) = fs.__reduce__()
    return dict(options)


HERE = set(_options(pafs.S3FileSystem(access_key="k", secret_key="s", region="us-east-1")))
"""The options this pyarrow has (16, the floor, has no ``allow_delayed_open``)."""

WRITES_HERE = {key: value for key, value in OBJECT_STORE_WRITES.items() if key in HERE}


def test_an_s3_store_puts_each_file_on_the_calling_thread() -> None:
    fs, root, local = resolve_filesystem("s3://bucket/health", OPTIONS, timeout=5)
    assert (root, local) == ("bucket/health", False)
    options = _options(fs)
    assert {key: options[key] for key in WRITES_HERE} == WRITES_HERE and options["background_writes"] is False
    assert options.get("allow_delayed_open", "allow_delayed_open" not in HERE) is True
    assert options["endpoint_override"] == "127.0.0.1:9" and options["request_timeout"] == 5


def test_an_s3_url_with_its_settings_in_the_query_gets_the_same_write_options() -> None:
    fs, root, _ = resolve_filesystem("s3://bucket/h?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http")
    options = _options(fs)
    assert root == "bucket/h" and options["endpoint_override"] == "127.0.0.1:9"
    assert {key: options[key] for key in WRITES_HERE} == WRITES_HERE


def test_large_files_stream_through_a_filesystem_that_uploads_parts_in_the_background() -> None:
    fs, _, _ = resolve_filesystem("s3://bucket/health", OPTIONS)
    streaming = streaming_filesystem(fs)
    assert streaming is not fs
    wanted = {**_options(fs), **STREAMED_WRITES}
    assert _options(streaming) == wanted  # credentials, endpoint, delayed open: all kept
    assert streaming_filesystem(streaming) is streaming  # already so: not rebuilt
    local = pafs.LocalFileSystem()
    assert streaming_filesystem(local) is local


def test_store_files_build_the_streaming_filesystem_once_and_only_for_a_large_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Written as an object store's files (``local=False``) on a local filesystem: small files are one write each;
    large ones stream through the filesystem ``streaming_filesystem`` gives, built at the first of them."""
    built: list[pafs.FileSystem] = []

    def streaming(fs: pafs.FileSystem) -> pafs.FileSystem:
        built.append(fs)
        return fs

    monkeypatch.setattr(store_files, "streaming_filesystem", streaming)
    fs = pafs.LocalFileSystem()
    fs.create_dir(f"{tmp_path}/task_runs/date=2026-11-23")
    files = StoreFiles(fs, str(tmp_path), local=False)
    files.write("task_runs", task_rows(20))
    assert built == []
    monkeypatch.setattr(store_files, "BUFFERED_WRITE_BYTES", 0)
    files.write("task_runs", task_rows(20, start=20))
    files.write("task_runs", task_rows(20, start=40))
    assert built == [fs]
    assert sorted(pq.read_table(f"{tmp_path}/task_runs").column("task_run_id").to_pylist()) == sorted(
        f"t{i}" for i in range(60)
    )


def _refusing(refused: set[str], made: list[dict[str, Any]]) -> Any:
    """A stand-in for ``S3FileSystem`` of an older pyarrow: ``TypeError`` (pyarrow's wording) for an option in
    ``refused``; what it was built with is appended to ``made``."""

    def build(**kwargs: Any) -> Mapping[str, Any]:
        for key in kwargs:
            if key in refused:
                raise TypeError(f"__init__() got an unexpected keyword argument '{key}'")
        made.append(kwargs)
        return kwargs

    return build


_KEYS = st.sampled_from(["allow_delayed_open", "background_writes", "check_directory_existence_before_creation"])


@given(extra=st.dictionaries(_KEYS, st.booleans()), refused=st.sets(_KEYS))
def test_options_this_pyarrow_lacks_are_left_out_and_the_others_kept(extra: dict[str, bool], refused: set[str]) -> None:
    made: list[dict[str, Any]] = []
    built = location._with_options(_refusing(refused, made), {"region": "us-east-1"}, extra)
    assert made == [built]
    assert built == {"region": "us-east-1", **{k: v for k, v in extra.items() if k not in refused}}


def test_a_type_error_about_the_callers_own_options_is_raised() -> None:
    with pytest.raises(TypeError, match="region"):
        location._with_options(_refusing({"region"}, []), {"region": "us-east-1"}, OBJECT_STORE_WRITES)


def test_a_pyarrow_without_delayed_open_still_opens_the_store_without_background_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyarrow 16 (the floor) has no ``allow_delayed_open``: the store opens (a multipart upload per file, as
    before) and still uploads on the calling thread."""
    made: list[dict[str, Any]] = []
    real = pafs.S3FileSystem

    def old_pyarrow(**kwargs: Any) -> pafs.S3FileSystem:
        if "allow_delayed_open" in kwargs:
            raise TypeError("__init__() got an unexpected keyword argument 'allow_delayed_open'")
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(pafs, "S3FileSystem", old_pyarrow)
    fs = location._s3_filesystem({"access_key": "k", "secret_key": "s", "region": "us-east-1"})
    assert made == [{"access_key": "k", "secret_key": "s", "region": "us-east-1", "background_writes": False}]
    monkeypatch.setattr(pafs, "S3FileSystem", real)
    assert _options(fs)["background_writes"] is False and _options(fs).get("allow_delayed_open", False) is False
