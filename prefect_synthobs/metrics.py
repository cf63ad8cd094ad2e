"""Public home of the metric registry (the DESIGN contract path).

``REGISTRY`` is the ``prometheus_client.CollectorRegistry`` that holds every
synthobs metric; the catalog itself lives in ``prefect_synthobs.telemetry.metrics``.

Example:
    ```python
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY

    print(generate_latest(REGISTRY).decode())
    ```
"""

from prefect_synthobs.telemetry.metrics import REGISTRY, SynthObsMetrics

__all__ = ["REGISTRY", "SynthObsMetrics"]
