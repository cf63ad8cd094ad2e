"""Autolog on the real synthcity 0.2: a plugin's fit, its GAN epochs as they end, its generated rows.

synthcity pins torch < 2.3 and numpy < 2, so it cannot share the sdv environment (torch 2.13, numpy 2);
its own resolution is also broken (opacus 1.5.4 needs torch >= 2.4): it runs in an environment of its own,
`pip install -e ".[test]" synthcity "opacus<1.5" "pyarrow<21"` (about 3 GB: a CUDA build of torch 2.2), made
by `SYNTHOBS_TEST_SYNTHCITY=1 bash scripts/test.sh`. Everywhere else this module is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow

pytest.importorskip(
    "synthcity", reason="synthcity needs torch<2.3 and numpy<2: run with SYNTHOBS_TEST_SYNTHCITY=1 scripts/test.sh"
)

import prefect_synthobs as so
from prefect_synthobs import catalog as names

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def test_plugins_fit_live_gan_epochs_and_generated_rows(store_dir: Path) -> None:
    from synthcity.plugins import Plugins

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"age": rng.integers(18, 90, 400).astype(float), "income": rng.normal(50, 10, 400)})

    @so.observe(kind="training", table="people")
    @flow
    def pipeline() -> dict[str, int]:
        out = {}
        for name, kwargs in (("ctgan", {"n_iter": 3}), ("tvae", {"n_iter": 2})):
            plugin = Plugins().get(name, **kwargs)
            plugin.fit(real)
            out[name] = len(plugin.generate(count=150).dataframe())
        return out

    assert pipeline() == {"ctgan": 150, "tvae": 150}
    store = so.HealthStore(str(store_dir))
    fitted = store.read(names.MODELS).set_index("model_type")
    assert sorted(fitted.index) == ["ctgan", "tvae"]
    assert (fitted.library == "synthcity").all() and (fitted.fit_rows == 400).all()
    assert fitted.loc["ctgan", "epochs"] == 3 and pd.isna(fitted.loc["tvae", "epochs"])  # no per-epoch seam in VAEs
    epochs = store.read(names.TRAINING_EPOCHS)
    assert set(epochs.model_id) == {fitted.loc["ctgan", "model_id"]}
    assert sorted(epochs.epoch.unique()) == [0, 1, 2] and set(epochs.loss_type) == {"generator", "discriminator"}
    assert epochs.groupby("epoch").time.first().nunique() == 3
    assert store.read(names.FLOW_RUNS).rows.tolist() == [300]
