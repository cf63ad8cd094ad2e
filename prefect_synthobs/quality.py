"""Public home of the quality, privacy and utility scores (the DESIGN contract path).

The scores live in ``prefect_synthobs.scores``; this module re-exports them.

Example:
    ```python
    from prefect_synthobs.quality import quality_report

    report = quality_report(real, synthetic, {"columns": {"age": {"sdtype": "numerical"}}})
    print(report.overall, report.properties)

    tables = multi_table_quality_report({"customers": customers, "orders": orders}, synthetic_tables, sdv_metadata)
    print(tables.overall, tables.properties, tables.tables["orders"])
    ```
"""

from prefect_synthobs.scores import (
    columns,
    detection,
    diagnostic,
    disclosure,
    fidelity,
    metadata,
    multi_table,
    privacy,
    relationships,
    utility,
)
from prefect_synthobs.scores.columns import *  # noqa: F403
from prefect_synthobs.scores.detection import *  # noqa: F403
from prefect_synthobs.scores.diagnostic import *  # noqa: F403
from prefect_synthobs.scores.disclosure import *  # noqa: F403
from prefect_synthobs.scores.fidelity import *  # noqa: F403
from prefect_synthobs.scores.metadata import *  # noqa: F403
from prefect_synthobs.scores.multi_table import *  # noqa: F403
from prefect_synthobs.scores.privacy import *  # noqa: F403
from prefect_synthobs.scores.relationships import *  # noqa: F403
from prefect_synthobs.scores.utility import *  # noqa: F403

__all__ = [
    *columns.__all__,
    *detection.__all__,
    *diagnostic.__all__,
    *disclosure.__all__,
    *fidelity.__all__,
    *metadata.__all__,
    *multi_table.__all__,
    *privacy.__all__,
    *relationships.__all__,
    *utility.__all__,
]
