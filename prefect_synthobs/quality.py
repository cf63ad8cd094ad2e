"""Public home of the quality, privacy and utility scores (the DESIGN contract path).

The scores live in ``prefect_synthobs.scores``; this module re-exports them.

Example:
    ```python
    from prefect_synthobs.quality import quality_report

    report = quality_report(real, synthetic, {"columns": {"age": {"sdtype": "numerical"}}})
    print(report.overall, report.properties)
    ```
"""

from prefect_synthobs.scores.fidelity import (
    QualityReport,
    contingency_similarity,
    correlation_similarity,
    ks_complement,
    quality_report,
    tv_complement,
)
from prefect_synthobs.scores.privacy import (
    dcr,
    dcr_baseline_protection,
    dcr_overfitting_protection,
    exact_match_rate,
    membership_inference_auc,
    new_row_synthesis,
)
from prefect_synthobs.scores.utility import tstr

__all__ = [
    "QualityReport",
    "contingency_similarity",
    "correlation_similarity",
    "dcr",
    "dcr_baseline_protection",
    "dcr_overfitting_protection",
    "exact_match_rate",
    "ks_complement",
    "membership_inference_auc",
    "new_row_synthesis",
    "quality_report",
    "tstr",
    "tv_complement",
]
