"""Telemetry edges: tracing, the metric catalog and its exposition, log filters, redaction."""
