"""A minimal OTLP receiver speaking the wire protocol (gRPC and HTTP/protobuf) for traces,
metrics and logs, built from opentelemetry-proto's messages, for tests."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status_message: str = ""

    def texts(self) -> list[str]:
        """Every string the span carries: attributes, event attributes, status message."""
        values = [*self.attributes.values(), *(v for _, attrs in self.events for v in attrs.values())]
        return [str(v) for v in values] + [self.status_message]


@dataclass
class ReceivedPoint:
    """One metric data point: a number, or a histogram's count and sum (``value`` is the sum)."""

    metric: str
    unit: str
    kind: str  # gauge, sum, histogram
    monotonic: bool
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]
    count: int = 0
    bounds: list[float] = field(default_factory=list)
    exemplars: list[tuple[str, str, float]] = field(default_factory=list)  # (trace id, span id, value)


@dataclass
class ReceivedLog:
    body: Any
    severity_number: int
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


def _points(request: Any) -> list[ReceivedPoint]:
    out = []
    for rm in request.resource_metrics:
        resource = {a.key: _value(a.value) for a in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for p in data.data_points:
                    attrs = {a.key: _value(a.value) for a in p.attributes}
                    exemplars = [
                        (e.trace_id.hex(), e.span_id.hex(), e.as_double or float(e.as_int)) for e in p.exemplars
                    ]
                    if kind == "histogram":
                        point = ReceivedPoint(
                            m.name, m.unit, kind, False, attrs, p.sum, resource, p.count, list(p.explicit_bounds)
                        )
                    else:
                        value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        monotonic = kind == "sum" and data.is_monotonic
                        point = ReceivedPoint(m.name, m.unit, kind, monotonic, attrs, value, resource)
                    point.exemplars = exemplars
                    out.append(point)
    return out


def _logs(request: Any) -> list[ReceivedLog]:
    out = []
    for rl in request.resource_logs:
        resource = {a.key: _value(a.value) for a in rl.resource.attributes}
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append(
                    ReceivedLog(
                        body=_value(r.body),
                        severity_number=r.severity_number,
                        severity_text=r.severity_text,
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                        attributes={a.key: _value(a.value) for a in r.attributes},
                        resource=resource,
                        scope=sl.scope.name,
                    )
                )
    return out


@dataclass
class Receiver:
    """Collects every span, metric point and log record exported to it."""

    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    points: list[ReceivedPoint] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_metrics(self, request: Any) -> None:
        points = _points(request)
        with self.lock:
            self.points.extend(points)

    def add_logs(self, request: Any) -> None:
        logs = _logs(request)
        with self.lock:
            self.logs.extend(logs)

    def latest(self, metric: str) -> dict[tuple[tuple[str, Any], ...], ReceivedPoint]:
        """The last point received of each series of ``metric`` (cumulative temporality)."""
        with self.lock:
            points = [p for p in self.points if p.metric == metric]
        return {tuple(sorted(p.attributes.items())): p for p in points}

    def wait_until(self, predicate: Any, timeout: float = 60.0) -> bool:
        """Wait until ``predicate(receiver)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        out = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            resource=resource,
                            scope=ss.scope.name,
                            events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events],
                            status_message=s.status.message,
                        )
                    )
        with self.lock:
            self.spans.extend(out)
            self.headers.append(headers)

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.add(request, {k: v for k, v in context.invocation_metadata()})
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.add_logs(request)
        return logs_service_pb2.ExportLogsServiceResponse()


@contextmanager
def grpc_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(receiver), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(receiver), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(receiver), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    receiver.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.stop(grace=None)


HTTP_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if "protobuf" not in self.headers.get("Content-Type", "") or self.path not in HTTP_PATHS:
                self.send_response(404)
                self.end_headers()
                return
            if self.path == "/v1/traces":
                receiver.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body), dict(self.headers))
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                receiver.add_metrics(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
                payload = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            else:
                receiver.add_logs(logs_service_pb2.ExportLogsServiceRequest.FromString(body))
                payload = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
