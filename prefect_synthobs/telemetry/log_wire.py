"""OTLP log records straight to protobuf bytes (pure).

A run-log record becomes an ``opentelemetry.proto.logs.v1.LogRecord`` without
the SDK's ``LogRecord``, ``BoundedAttributes`` and per-record protobuf message
objects: the run's attributes repeat on every record of a run (logger, flow run
id and names), so each ``(key, value)`` pair is encoded once and its bytes
reused. The resource and the instrumentation scope are encoded once per
exporter, by the SDK's own encoder, so what reaches the collector is what the
SDK's ``encode_logs`` would send for the same records (the tests compare the
parsed messages).

Wire format, from ``opentelemetry/proto/logs/v1/logs.proto``: ``LogRecord``
fields 1 ``time_unix_nano`` (fixed64), 2 ``severity_number`` (varint), 3
``severity_text``, 5 ``body`` (``AnyValue``), 6 ``attributes`` (``KeyValue``),
8 ``flags`` (fixed32), 9 ``trace_id`` (16 bytes), 10 ``span_id`` (8 bytes), 11
``observed_time_unix_nano`` (fixed64); ``ScopeLogs`` 1 scope, 2 log_records, 3
schema_url; ``ResourceLogs`` 1 resource, 2 scope_logs, 3 schema_url;
``ExportLogsServiceRequest`` 1 resource_logs. ``AnyValue.string_value`` is field 1.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")


class WireLog(NamedTuple):
    """One captured run-log record, everything already redacted (what the flow's thread keeps)."""

    time_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    body: str
    trace_id: int  # 0: no span
    span_id: int
    flags: int
    attributes: Mapping[str, Any]


_ONE_BYTE = tuple(bytes((i,)) for i in range(256))


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:  # the length of nearly every field here
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    """One length-delimited field: ``tag`` is ``(field << 3) | 2`` (fields below 16: one byte)."""
    return _ONE_BYTE[tag] + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message for a string, bool, int or float (what run-log attributes hold)."""
    if isinstance(value, bool):
        return b"\x10" + varint(int(value))  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value = 3 (two's complement)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)  # double_value = 4
    return length_delimited(0x0A, str(value).encode("utf-8"))  # string_value = 1


class AttributeCache:
    """Encoded ``LogRecord.attributes`` entries (field 6, tag and length included) by ``(key, value)``,
    and the severity-and-body fields by their values.

    Bounded: cleared when it holds ``limit`` entries (task run ids are new on
    every task; the logger and flow run names repeat).
    """

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[tuple[str, Any], bytes] = {}
        self._heads: dict[tuple[int, str, str], bytes] = {}
        self._limit = limit

    def field(self, key: str, value: Any) -> bytes:
        cache_key = (key, value)
        encoded = self._entries.get(cache_key)
        if encoded is None:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            kv = length_delimited(0x0A, key.encode("utf-8")) + length_delimited(0x12, any_value(value))
            encoded = self._entries[cache_key] = length_delimited(0x32, kv)
        return encoded

    def head(self, severity_number: int, severity_text: str, body: str) -> bytes:
        """Fields 2, 3 and 5 (severity number and text, body): a run's lines repeat them
        ("Finished in state Completed()"); bodies longer than 200 characters are not kept."""
        cache_key = (severity_number, severity_text, body)
        encoded = self._heads.get(cache_key)
        if encoded is None:
            parts: list[bytes] = []
            if severity_number:
                parts += (b"\x10", varint(severity_number))
            if severity_text:
                parts.append(length_delimited(0x1A, severity_text.encode("utf-8")))
            parts.append(length_delimited(0x2A, any_value(body)))
            encoded = b"".join(parts)
            if len(body) <= 200:
                if len(self._heads) >= self._limit:
                    self._heads.clear()
                self._heads[cache_key] = encoded
        return encoded


def encode_record(log: WireLog, attributes: AttributeCache) -> bytes:
    """One ``LogRecord`` message (zero and empty fields left out, as protobuf does)."""
    field = attributes.field
    parts = [
        b"\x09",
        _FIXED64.pack(log.time_ns),
        attributes.head(log.severity_number, log.severity_text, log.body),
        *[field(k, v) for k, v in log.attributes.items()],
    ]
    if log.flags:
        parts += (b"\x45", _FIXED32.pack(log.flags))
    if log.trace_id:
        parts += (b"\x4a\x10", log.trace_id.to_bytes(16, "big"))  # 16 bytes
    if log.span_id:
        parts += (b"\x52\x08", log.span_id.to_bytes(8, "big"))  # 8 bytes
    if log.observed_ns:
        parts += (b"\x59", _FIXED64.pack(log.observed_ns))
    return b"".join(parts)


class LogRequestEncoder:
    """``ExportLogsServiceRequest`` bytes for batches of ``WireLog`` under one resource and scope.

    Args:
        resource: The encoded ``Resource`` message.
        scope: The encoded ``InstrumentationScope`` message.
        resource_schema_url: ``ResourceLogs.schema_url``.
        scope_schema_url: ``ScopeLogs.schema_url``.
    """

    def __init__(
        self, resource: bytes, scope: bytes, resource_schema_url: str = "", scope_schema_url: str = ""
    ) -> None:
        self._resource_head = length_delimited(0x0A, resource)
        self._resource_tail = length_delimited(0x1A, resource_schema_url.encode()) if resource_schema_url else b""
        self._scope_head = length_delimited(0x0A, scope)
        self._scope_tail = length_delimited(0x1A, scope_schema_url.encode()) if scope_schema_url else b""
        self.attributes = AttributeCache()

    def encode(self, batch: Iterable[WireLog]) -> bytes:
        records = [length_delimited(0x12, encode_record(log, self.attributes)) for log in batch]
        scope_logs = self._scope_head + b"".join(records) + self._scope_tail
        resource_logs = self._resource_head + length_delimited(0x12, scope_logs) + self._resource_tail
        return length_delimited(0x0A, resource_logs)


def sdk_encoder(resource: Any, scope_name: str, scope_version: str | None) -> LogRequestEncoder:
    """A ``LogRequestEncoder`` whose resource and scope bytes come from the SDK's own encoder."""
    from opentelemetry.exporter.otlp.proto.common._internal import (
        _encode_instrumentation_scope,
        _encode_resource,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    scope = InstrumentationScope(scope_name, scope_version)
    return LogRequestEncoder(
        _encode_resource(resource).SerializeToString(),
        _encode_instrumentation_scope(scope).SerializeToString(),
        resource.schema_url or "",
        scope.schema_url or "",
    )


def batches(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
