"""The setup Jobs (database roles, object storage buckets and users) re-run exactly when needed.

A Job's pod template is immutable and a finished Job never runs again, so each setup Job is
named after a digest of everything it applies, passwords included: a new password must give a
new name (a new run), and an unchanged environment must keep its name (no run, no replacement).
"""

from __future__ import annotations

import pulumi
import pytest

from smartnation.program.city_platform import build
from smartnation.settings import load_settings
from smartnation.settings.stack_secrets import database_role_password, object_storage_secret_key
from tests.unit.harness import install_mocks, run, secrets_for, set_secrets

pytestmark = pytest.mark.unit

JOB = "kubernetes:batch/v1:Job"


def setup_job_names(secrets: dict[str, str]) -> dict[str, str]:
    """Pulumi name -> Kubernetes name of every setup Job of staging built with ``secrets``."""
    settings = load_settings("staging")
    recorder = install_mocks()
    set_secrets(secrets)
    try:
        run(recorder, lambda: build(settings))
    finally:
        pulumi.runtime.set_all_config({})
    # The APIs' migration Jobs are named after their image (tests/unit/test_least_privilege.py).
    jobs = [r for r in recorder.resources if r.type == JOB and not r.name.endswith("-migrate")]
    return {r.name: r.plain["metadata"]["name"] for r in jobs}


def changed(secrets: dict[str, str], key: str) -> dict[str, str]:
    return {**secrets, key: secrets[key] + "-rotated"}


@pytest.fixture(scope="module")
def staging() -> tuple[dict[str, str], dict[str, str]]:
    secrets = secrets_for(load_settings("staging"))
    return secrets, setup_job_names(secrets)


def test_an_unchanged_environment_keeps_its_setup_job_names(staging) -> None:
    secrets, names = staging
    assert sorted(name.split("-", 2)[-1] for name in names) == ["database-setup", "object-storage-setup-job"]
    assert setup_job_names(dict(secrets)) == names


def test_a_database_password_renames_only_the_database_setup_job(staging) -> None:
    secrets, names = staging
    role = next(r.name for r in load_settings("staging").database.roles if r.login)
    renamed = setup_job_names(changed(secrets, database_role_password(role)))
    assert {k for k in names if renamed[k] != names[k]} == {k for k in names if k.endswith("-database-setup")}


def test_a_storage_key_renames_only_the_object_storage_setup_job(staging) -> None:
    secrets, names = staging
    user = load_settings("staging").object_storage.users[0].name
    renamed = setup_job_names(changed(secrets, object_storage_secret_key(user)))
    assert {k for k in names if renamed[k] != names[k]} == {k for k in names if k.endswith("-object-storage-setup-job")}
