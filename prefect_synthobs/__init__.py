"""prefect-synthobs: observability for synthetic-data pipelines on Prefect 3.

Example:
    ```python
    from prefect import flow
    import prefect_synthobs as so

    @so.observe(kind="generation", model_type="gaussian_copula", table="customers")
    @flow
    def generate(n_rows: int):
        with so.span("generation.batch", batch_size=n_rows):
            df = sample(n_rows)
        so.record_rows(len(df))
        return df
    ```
"""

import sys

from prefect_synthobs import autolog
from prefect_synthobs._version import __version__
from prefect_synthobs.autolog import TrainingHealthError
from prefect_synthobs.config.active import ConfiguredHealthStore as HealthStore
from prefect_synthobs.config.active import configure
from prefect_synthobs.config.blocks import (
    HealthStoreConfig,
    MetricsConfig,
    OtlpExporter,
    PrivacyBudget,
    QualityGates,
    SynthObsConfig,
)
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.instrument.gates import QualityGateFailed, check_quality
from prefect_synthobs.instrument.measurements import record_epoch, record_quality, record_rows
from prefect_synthobs.instrument.observe import observe
from prefect_synthobs.instrument.privacy_budget import (
    PrivacyBudgetExceeded,
    PrivacyBudgetUnavailable,
    PrivacySpend,
    record_privacy_spend,
)
from prefect_synthobs.instrument.spans import span

__all__ = [
    "HealthStore",
    "HealthStoreConfig",
    "MetricsConfig",
    "OtlpExporter",
    "PrivacyBudget",
    "PrivacyBudgetExceeded",
    "PrivacyBudgetUnavailable",
    "PrivacySpend",
    "QualityGateFailed",
    "QualityGates",
    "SynthObsConfig",
    "SynthObsSettings",
    "TrainingHealthError",
    "__version__",
    "autolog",
    "check_quality",
    "configure",
    "observe",
    "record_epoch",
    "record_privacy_spend",
    "record_quality",
    "record_rows",
    "span",
]

# ``import prefect_synthobs`` before Prefect: Prefect's plugin hook ran while this package was importing and put
# its set-up off (``prefect_synthobs_plugin.run_deferred``): it runs now, the package whole.
_plugin = sys.modules.get("prefect_synthobs_plugin")
if _plugin is not None and getattr(_plugin, "_deferred", None):
    _plugin.run_deferred()
del _plugin
