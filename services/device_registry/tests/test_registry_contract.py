"""device-registry against the real daemons (see telemetry_ingest's contract tests): the
``devices`` database as the ``device_registry`` role, commands through two broker pods with the
project's ACLs."""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Iterator

import httpx
import pytest

from service_testing.daemons import Platform, RunningService, start_service, wait_until
from service_testing.devices import Device

pytestmark = pytest.mark.contract

MONACO = {"latitude": 43.7384, "longitude": 7.4246, "label": "Place du Casino"}


@pytest.fixture(scope="module")
def registry(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service = start_service("device_registry", platform.env("device-registry"), tmp_path_factory.mktemp("registry"))
    wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, 30, what="registry ready")
    yield service
    assert service.terminate() == 0


@pytest.fixture()
def api(registry: RunningService, platform: Platform) -> Iterator[httpx.Client]:
    """An operator's client: the bearer token the program gives the `operator` client."""
    token = platform.operator_token("device-registry", "operator")
    with httpx.Client(base_url=registry.url, timeout=15, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def new_id(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def register(api: httpx.Client, device_id: str, device_class: str = "parking-sensor") -> dict:
    response = api.post("/v1/devices", json={"id": device_id, "class": device_class, "location": MONACO})
    assert response.status_code == 201, response.text
    return response.json()


def test_register_get_list_retire(api: httpx.Client) -> None:
    parking, traffic = new_id("p"), new_id("t")
    created = register(api, parking)
    assert created["class"] == "parking-sensor" and created["location"] == MONACO and created["retired_at"] is None
    register(api, traffic, "traffic-sensor")
    assert api.get(f"/v1/devices/{parking}").json()["id"] == parking

    listed = [d["id"] for d in api.get("/v1/devices", params={"class": "parking-sensor", "limit": 1000}).json()]
    assert parking in listed and traffic not in listed

    retired = api.delete(f"/v1/devices/{parking}")
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    assert api.delete(f"/v1/devices/{parking}").json()["retired_at"] == retired.json()["retired_at"]
    assert parking not in [d["id"] for d in api.get("/v1/devices", params={"limit": 1000}).json()]
    assert parking in [d["id"] for d in api.get("/v1/devices", params={"include_retired": True, "limit": 1000}).json()]


def test_list_pages_by_id(api: httpx.Client) -> None:
    prefix = new_id("page")
    ids = [f"{prefix}-{i}" for i in range(3)]
    for device_id in ids:
        register(api, device_id)
    first = api.get("/v1/devices", params={"after": f"{prefix}-", "limit": 2}).json()
    assert [d["id"] for d in first] == ids[:2]
    second = api.get("/v1/devices", params={"after": ids[1], "limit": 1}).json()
    assert [d["id"] for d in second] == ids[2:]


def test_refusals(api: httpx.Client) -> None:
    device_id = new_id()
    register(api, device_id)
    assert (
        api.post("/v1/devices", json={"id": device_id, "class": "parking-sensor", "location": MONACO}).status_code
        == 409
    )
    unknown = api.post("/v1/devices", json={"id": new_id(), "class": "toaster", "location": MONACO})
    assert unknown.status_code == 422 and "unknown device class" in unknown.text
    assert api.post("/v1/devices", json={"id": "a/b", "class": "parking-sensor", "location": MONACO}).status_code == 422
    assert api.get(f"/v1/devices/{new_id()}").status_code == 404
    assert api.delete(f"/v1/devices/{new_id()}").status_code == 404


def test_a_command_reaches_the_device_whichever_broker_pod_it_is_on(api: httpx.Client, platform: Platform) -> None:
    """The device is connected to the second broker pod only: the registry publishes on every pod."""
    device_id = new_id()
    register(api, device_id)
    user, password = platform.device_credentials("parking-sensor")
    device = Device(platform.brokers.ports[1], user, password)
    try:
        assert device.subscribe(f"city/parking/{device_id}/commands") == [1]
        response = api.post(f"/v1/devices/{device_id}/commands", json={"command": "reboot", "args": {"delay_s": 5}})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["topic"] == f"city/parking/{device_id}/commands"
        assert (body["brokers_reached"], body["brokers_total"]) == (2, 2)
        message = device.messages.get(timeout=10)
        command = json.loads(message.payload)
        assert (command["command"], command["args"], command["command_id"]) == (
            "reboot",
            {"delay_s": 5},
            body["command_id"],
        )
        with pytest.raises(queue.Empty):
            device.messages.get(timeout=0.5)  # once, not once per broker pod
    finally:
        device.close()
    recorded = platform.postgres.sql(
        f"SELECT command, brokers_reached FROM commands WHERE device_id = '{device_id}'", "devices"
    )
    assert recorded == "reboot|2"


def test_commands_are_refused_where_they_cannot_go(api: httpx.Client) -> None:
    air = new_id("a")
    register(api, air, "air-quality-sensor")
    assert api.post(f"/v1/devices/{air}/commands", json={"command": "reboot"}).status_code == 422
    retired = new_id()
    register(api, retired)
    api.delete(f"/v1/devices/{retired}")
    assert api.post(f"/v1/devices/{retired}/commands", json={"command": "reboot"}).status_code == 409
    assert api.post(f"/v1/devices/{new_id()}/commands", json={"command": "reboot"}).status_code == 404


def test_without_an_operator_token_nothing_is_registered_nor_commanded(
    api: httpx.Client, registry: RunningService, platform: Platform
) -> None:
    """The real process with the program's OPERATOR_TOKENS: no token, another API's or a wrong one
    is refused (401) on every /v1 route and nothing reaches the database; the verify client's own
    token works; the probes stay open."""
    device_id = new_id()
    register(api, device_id)
    body = {"id": new_id(), "class": "parking-sensor", "location": MONACO}
    verify = platform.operator_token("device-registry", "verify")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {verify[:-1]}"},
                    {"Authorization": f"Basic {verify}"}):  # fmt: skip
        with httpx.Client(base_url=registry.url, timeout=15, headers=headers) as anonymous:
            assert anonymous.post("/v1/devices", json=body).status_code == 401
            assert anonymous.post(f"/v1/devices/{device_id}/commands", json={"command": "reboot"}).status_code == 401
            assert anonymous.delete(f"/v1/devices/{device_id}").status_code == 401
            assert anonymous.get("/v1/devices").status_code == 401
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/readyz").status_code == 200
    assert api.get(f"/v1/devices/{body['id']}").status_code == 404
    assert api.get(f"/v1/devices/{device_id}").json()["retired_at"] is None
    recorded = platform.postgres.sql(f"SELECT count(*) FROM commands WHERE device_id = '{device_id}'", "devices")
    assert recorded == "0"
    with httpx.Client(base_url=registry.url, timeout=15, headers={"Authorization": f"Bearer {verify}"}) as checks:
        assert checks.post("/v1/devices", json=body).status_code == 201


def test_readiness_names_its_dependencies(api: httpx.Client) -> None:
    checks = api.get("/readyz").json()["checks"]
    assert set(checks) == {"database", "schema", "brokers"}
    assert all(check["ok"] for check in checks.values())
