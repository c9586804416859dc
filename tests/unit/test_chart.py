"""charts/city-api without helm: metadata, defaults and schema agree with each other and the environments.

Rendering with the real helm is in tests/contract/test_chart.py.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from smartnation.program.components.city_apis import CHART_PATH, chart_version
from smartnation.settings import load_settings
from tests.unit.harness import ENVIRONMENTS

pytestmark = pytest.mark.unit

SCHEMA = json.loads((CHART_PATH / "values.schema.json").read_text(encoding="utf-8"))
DEFAULTS = yaml.safe_load((CHART_PATH / "values.yaml").read_text(encoding="utf-8"))


def test_schema_is_valid_and_accepts_the_chart_defaults() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(DEFAULTS, SCHEMA)


def test_every_default_value_is_declared_in_the_schema() -> None:
    assert set(DEFAULTS) == set(SCHEMA["properties"])


@pytest.mark.parametrize(
    "change",
    [
        {"image": {"repository": "r", "tag": "latest"}},
        {"image": {"repository": "r"}},
        {"image": {"repository": "r", "tag": "1.0.0"}},  # no digest: the chart runs images by digest only
        {"image": {"repository": "r", "tag": "1.0.0", "digest": "1.0.0"}},
        {"image": {"repository": "r", "tag": "1.0.0", "digest": "sha256:" + "a" * 63}},
        {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
        {"autoscaling": {"enabled": True, "minReplicas": 0}},
        {"ingress": {"enabled": True, "className": 3}},
        {"envFromSecrets": ["Not A Name"]},
        {"somethingElse": 1},
    ],
)
def test_schema_rejects_bad_values(change: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**DEFAULTS, **change}, SCHEMA)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environments_deploy_the_chart_version_in_the_repository(environment: str) -> None:
    assert load_settings(environment).releases.chart_version == chart_version()


def test_every_template_carries_the_standard_labels() -> None:
    for template in (CHART_PATH / "templates").glob("*.yaml"):
        text = template.read_text(encoding="utf-8")
        assert 'include "city-api.labels"' in text, template.name
    helpers = (CHART_PATH / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    for label in ("name", "instance", "version", "component", "part-of", "managed-by"):
        assert f"app.kubernetes.io/{label}:" in helpers
