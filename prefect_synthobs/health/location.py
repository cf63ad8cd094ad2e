"""Where a health store is: its URL, checked, and the filesystem and root it names.

A store root is a local path, a ``file://`` URL or an ``s3://`` prefix.
``HealthStore(url=None)`` asks a ``StoreLocation`` where to go: the health
layer's own default is ``embedded_default_location`` (``$PREFECT_HOME/synthobs``);
the configuration layer passes one that reads the configured ``store_url``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
from prefect.settings import get_current_settings

from prefect_synthobs.telemetry.redaction import strip_url_credentials

StoreLocation = Callable[[], tuple[str, Mapping[str, str] | None]]
"""Where ``HealthStore()`` without a URL goes: ``() -> (url, storage options)``."""

_S3_OPTIONS = {
    "access_key": "access_key",
    "aws_access_key_id": "access_key",
    "key": "access_key",
    "secret_key": "secret_key",
    "aws_secret_access_key": "secret_key",
    "secret": "secret_key",
    "session_token": "session_token",
    "aws_session_token": "session_token",
    "token": "session_token",
    "region": "region",
    "region_name": "region",
    "endpoint_override": "endpoint_override",
    "endpoint_url": "endpoint_override",
    "scheme": "scheme",
    "connect_timeout": "connect_timeout",
    "request_timeout": "request_timeout",
}


STORE_SCHEMES = ("file", "s3")

OBJECT_STORE_WRITES: Mapping[str, Any] = {"allow_delayed_open": True, "background_writes": False}
"""How synthobs opens an S3 filesystem (``pyarrow.fs.S3FileSystem`` options).

``allow_delayed_open``: a file's upload starts only when its bytes are there, so a health-store file under the
part size (5 MiB: every flush of a few thousand rows) is one ``PutObject`` instead of three requests (create,
part, complete a multipart upload), and a larger one is still a multipart upload. Either way the object appears
whole under its final name or not at all. A missing bucket or refused credentials then show when the file is
closed, still as the write's ``OSError``.

``background_writes`` off: a flush hands the SDK its whole encoded file in one write and closes it at once, so
an upload on pyarrow's I/O threads overlaps nothing and only adds a hand-off between threads to every request
(on moto over loopback a flush's ``PutObject`` took 8-9 ms on average with it, 5.5-6.5 ms without). A file
streamed in parts (over ``files.BUFFERED_WRITE_BYTES``: a compaction's merged file) is written through
``streaming_filesystem``, which keeps its parts uploading while the next ones are encoded.

Options this pyarrow does not have are left out (``allow_delayed_open`` is new in pyarrow 17: below it a file is
a multipart upload, as before)."""

STREAMED_WRITES: Mapping[str, Any] = {"background_writes": True}
"""``streaming_filesystem``'s options: parts of a large file upload in the background while it is encoded."""


def _with_options(
    build: Callable[..., pafs.S3FileSystem], kwargs: Mapping[str, Any], extra: Mapping[str, Any]
) -> pafs.S3FileSystem:
    """``build(**kwargs, **extra)`` (``extra`` wins), leaving out each option of ``extra`` this pyarrow refuses
    (``TypeError`` naming it); a ``TypeError`` about anything else is raised."""
    wanted = dict(extra)
    while True:
        try:
            return build(**{**kwargs, **wanted})
        except TypeError as exc:
            refused = [key for key in wanted if key in str(exc)]
            if not refused:
                raise
            for key in refused:
                del wanted[key]


def _rebuilt(fs: pafs.FileSystem, extra: Mapping[str, Any]) -> pafs.FileSystem:
    """``fs`` rebuilt with ``extra`` when it is an S3 filesystem (its other settings, resolved region and
    credentials included, are kept), else ``fs`` itself."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    rebuild, (options, *_) = fs.__reduce__()
    if all(options.get(key, value) == value for key, value in extra.items()):
        return fs  # already so (or this pyarrow does not have the option)
    try:
        return _with_options(lambda **kw: cast(pafs.S3FileSystem, rebuild(kw)), options, extra)
    except TypeError:  # not rebuildable with them on this pyarrow: as it is
        return fs


def _for_writing(fs: pafs.FileSystem) -> pafs.FileSystem:
    """``fs`` with ``OBJECT_STORE_WRITES`` when it is an S3 filesystem built from a URL (pyarrow resolved its
    region and credentials: its own constructor arguments are kept), else ``fs`` itself."""
    return _rebuilt(fs, OBJECT_STORE_WRITES)


def streaming_filesystem(fs: pafs.FileSystem) -> pafs.FileSystem:
    """The filesystem to stream a large file to (``STREAMED_WRITES``): an S3 filesystem like ``fs`` whose
    parts upload in the background, else ``fs`` itself. A new one costs a client set-up (tens of ms): keep it."""
    return _rebuilt(fs, STREAMED_WRITES)


def _s3_filesystem(kwargs: dict[str, Any]) -> pafs.S3FileSystem:
    """``S3FileSystem(**kwargs)`` with ``OBJECT_STORE_WRITES`` where this pyarrow has them."""
    return _with_options(pafs.S3FileSystem, kwargs, OBJECT_STORE_WRITES)


def check_store_url(url: str) -> str:
    """``url`` if it is a health-store root synthobs supports: a local path, a
    ``file://`` URL or an ``s3://`` prefix.

    Raises:
        ValueError: naming the URL (credentials stripped) and what is allowed.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the health store URL must be a non-empty path, file:// URL or s3:// prefix")
    parsed = urlparse(url)
    local = parsed.scheme == "" or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/"))
    if not local and parsed.scheme not in STORE_SCHEMES:
        raise ValueError(
            f"unsupported health store URL {strip_url_credentials(url)!r}: use a local path, a file:// URL "
            "or an s3:// prefix"
        )
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ValueError(f"health store URL {strip_url_credentials(url)!r} names no bucket (s3://bucket/prefix)")
    return url


def resolve_filesystem(
    url: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> tuple[pafs.FileSystem, str, bool]:
    """``(filesystem, root path, is_local)`` for a path, ``file://`` or object-store URL.

    ``storage_options`` (``s3://`` only) carry credentials and endpoint:
    ``access_key``, ``secret_key``, ``session_token``, ``region``,
    ``endpoint_override`` (boto-style names such as ``aws_access_key_id`` or
    ``endpoint_url`` are accepted too). ``timeout`` bounds each S3 connection
    and request (seconds), so a frozen endpoint cannot hold a writer forever.
    """
    parsed = urlparse(check_store_url(url))
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        if storage_options:
            raise ValueError("storage options are for object stores (s3://), not local paths")
        path = parsed.path if parsed.scheme == "file" else url
        return pafs.LocalFileSystem(), str(Path(path).expanduser().absolute()), True
    if parsed.scheme == "s3" and timeout is not None:
        storage_options = {"connect_timeout": str(timeout), "request_timeout": str(timeout), **(storage_options or {})}
    if storage_options:
        if parsed.scheme != "s3":
            raise ValueError(f"storage options are supported for s3:// stores, not {parsed.scheme}://")
        unknown = sorted(set(storage_options) - set(_S3_OPTIONS))
        if unknown:
            raise ValueError(f"unknown s3 storage option(s) {unknown}; known: {sorted(_S3_OPTIONS)}")
        kwargs: dict[str, Any] = {_S3_OPTIONS[k]: v for k, v in storage_options.items()}
        for key in ("connect_timeout", "request_timeout"):
            if key in kwargs:
                try:
                    kwargs[key] = float(kwargs[key])
                except ValueError:
                    raise ValueError(f"s3 storage option {key} must be seconds, got {kwargs[key]!r}") from None
        endpoint = kwargs.get("endpoint_override", "")
        if "://" in endpoint:  # boto-style URL: pyarrow wants host[:port] and a scheme
            scheme, _, rest = endpoint.partition("://")
            kwargs["endpoint_override"] = rest.rstrip("/")
            kwargs.setdefault("scheme", scheme)
        try:
            return _s3_filesystem(kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/"), False
        except (pa.ArrowInvalid, OSError, TypeError) as exc:
            raise ValueError(f"invalid s3 storage options: {exc}") from exc
    try:
        fs, root = pafs.FileSystem.from_uri(url)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        shown = strip_url_credentials(url)
        raise ValueError(f"unsupported health store URL {shown!r}: {strip_url_credentials(str(exc))}") from None
    return _for_writing(fs), root.rstrip("/"), False


def embedded_default_location() -> tuple[str, Mapping[str, str] | None]:
    """``$PREFECT_HOME/synthobs``: the store when nothing is configured."""
    return str(Path(get_current_settings().home).expanduser() / "synthobs"), None
