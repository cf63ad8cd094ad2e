"""Where a dataset's spent privacy budget lives in Prefect: names and the read.

The epsilon spent on a dataset is a Prefect variable
(``synthobs_privacy_spent__<dataset key>``), changed only while holding the
global concurrency limit ``synthobs-privacy-<dataset key>`` (see
``prefect_synthobs.instrument.privacy_budget``). Beside it, the variable
``synthobs_privacy_pending__<dataset key>`` lists the spends whose
``privacy_ledger`` row may not be durable yet (the journal the next spender
settles, so the ledger always sums to what was spent).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError
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


def pending_variable(dataset: str) -> str:
    """The Prefect variable listing ``dataset``'s spends whose ledger rows may not be durable yet."""
    return f"synthobs_privacy_pending__{dataset_key(dataset)}"


def pending_spends(dataset: str, client: SyncPrefectClient | None = None) -> list[dict[str, Any]]:
    """The journal of ``dataset``: spends whose ledger rows may not be durable yet (read from the Prefect API)."""
    if client is None:
        with get_client(sync_client=True) as own:
            return pending_spends(dataset, own)
    value = read_variable(client, pending_variable(dataset))
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def read_variable(client: SyncPrefectClient, name: str) -> Any:
    """The value of the Prefect variable ``name`` (``None`` if there is none), read with ``client``."""
    variable = client.read_variable_by_name(name)
    return None if variable is None else variable.value


def write_variable(client: SyncPrefectClient, name: str, value: Any) -> None:
    """Set the Prefect variable ``name`` to ``value`` with ``client`` (one request once it exists)."""
    try:
        client.update_variable(VariableUpdate(name=name, value=value))
        return
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
    try:
        client.create_variable(VariableCreate(name=name, value=value))
    except ObjectAlreadyExists:  # created meanwhile
        client.update_variable(VariableUpdate(name=name, value=value))


def holder_variable(dataset: str) -> str:
    """The Prefect variable where the holder of ``dataset``'s lock beats (its lease id and a counter)."""
    return f"synthobs_privacy_holder__{dataset_key(dataset)}"
