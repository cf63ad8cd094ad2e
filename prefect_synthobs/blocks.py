"""Public home of the Prefect blocks (``prefect block register -m prefect_synthobs.blocks``).

The blocks live in ``prefect_synthobs.config.blocks``; this module re-exports them.

Example:
    ```python
    from prefect_synthobs.blocks import SynthObsConfig

    config = SynthObsConfig.load("BLOCK_NAME")
    ```
"""

from prefect_synthobs.config.blocks import (
    BLOCKS,
    HealthStoreConfig,
    MetricsConfig,
    OtlpExporter,
    PrivacyBudget,
    QualityGates,
    SynthObsConfig,
    config_from_environment,
)

__all__ = [
    "BLOCKS",
    "HealthStoreConfig",
    "MetricsConfig",
    "OtlpExporter",
    "PrivacyBudget",
    "QualityGates",
    "SynthObsConfig",
    "config_from_environment",
]
