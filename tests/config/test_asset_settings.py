"""The asset key settings: a template is refused when it is made, not when a run fills it."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import prefect_synthobs as so
from prefect_synthobs.config.settings import ASSET_KEY_FIELDS, SynthObsSettings, check_asset_template


def test_the_defaults_are_synthobs_uris() -> None:
    settings = SynthObsSettings()
    assert settings.assets is True
    assert settings.asset_key_template == "synthobs://{table}/{model_type}"
    assert settings.asset_upstream_key_template == "synthobs://{table}/real"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("customers/{table}", "must be a URI"),
        ("://{table}", "must be a URI"),
        ("s3://lake/{tbl}", "uses {tbl}"),
        ("s3://lake/{table:>5}", "placeholders plainly"),
        ("s3://lake/{table!r}", "placeholders plainly"),
        ("s3://lake/{table:{model_type}}", "placeholders plainly"),
        ("s3://lake/{table", "malformed"),
        ("s3://lake/{0}", "uses {0}"),
    ],
)
def test_a_template_synthobs_cannot_fill_is_refused_with_the_reason(template: str, says: str) -> None:
    with pytest.raises(ValueError, match="asset") as caught:
        check_asset_template(template)
    assert says in str(caught.value)
    with pytest.raises(ValueError, match="asset_key_template"):
        so.configure(asset_key_template=template)


@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from([f"{{{name}}}" for name in ASSET_KEY_FIELDS]),
            st.text(alphabet=string.ascii_lowercase + "/-_.", min_size=1, max_size=8),
        ),
        max_size=6,
    ),
    values=st.fixed_dictionaries(
        {name: st.text(alphabet=string.ascii_lowercase, max_size=8) for name in ASSET_KEY_FIELDS}
    ),
)
def test_every_accepted_template_fills_without_error(parts: list[str], values: dict[str, str]) -> None:
    template = "s3://" + "".join(parts)
    assert check_asset_template(template) == template
    filled = template.format(**values)
    assert filled.startswith("s3://")
