"""Where a dataset's spent privacy budget lives in Prefect: names and the read.

The epsilon spent on a dataset is a Prefect variable
(``synthobs_privacy_spent__<dataset key>``), changed only while holding the
global concurrency limit ``synthobs-privacy-<dataset key>`` (see
``prefect_synthobs.instrument.privacy_budget``).
"""

from __future__ import annotations

import hashlib
import re

from prefect.variables import Variable


def dataset_key(dataset: str) -> str:
    """A name-safe key for ``dataset`` (Prefect names allow letters, digits, ``-`` and ``_``)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", dataset.lower()).strip("-")[:60] or "dataset"
    if slug != dataset:
        slug += "-" + hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return slug


def spent_variable(dataset: str) -> str:
    """The Prefect variable holding the epsilon spent on ``dataset``."""
    return f"synthobs_privacy_spent__{dataset_key(dataset)}"


def lock_name(dataset: str) -> str:
    """The Prefect global concurrency limit used as ``dataset``'s lock."""
    return f"synthobs-privacy-{dataset_key(dataset)}"


def spent_epsilon(dataset: str) -> float:
    """Epsilon spent on ``dataset`` so far (read from the Prefect API)."""
    return float(Variable.get(spent_variable(dataset), default=0.0, _sync=True))  # type: ignore[call-overload]
