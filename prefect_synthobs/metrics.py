"""Public home of the metric registry (the DESIGN contract path).

``REGISTRY`` is the ``prometheus_client.CollectorRegistry`` that holds every
synthobs metric; each metric is defined once, as a ``MetricSpec`` in
``prefect_synthobs.catalog.METRICS``, and ``SynthObsMetrics``
(``prefect_synthobs.telemetry.metrics``) builds the collectors from those specs.

Example:
    ```python
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY

    print(generate_latest(REGISTRY).decode())
    ```
"""

from prefect_synthobs.telemetry.metrics import REGISTRY, SynthObsMetrics

__all__ = ["REGISTRY", "SynthObsMetrics"]
