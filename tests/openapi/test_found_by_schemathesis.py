"""Defects Schemathesis found (tests/openapi/test_schemathesis.py), each pinned by a plain test: a JSON body's string
field takes a JSON string, as the schema says, never a number turned into one."""

import pytest

from destinations.services import destination_create
from sessions_app import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(owner):
    return services.session_create(api_key=owner.api_key, long_polling=True)


def test_a_number_as_the_session_password_to_verify_is_refused(api_client, session):
    response = api_client.post(f"/api/v1/upload/{session.pk}/verify-password", {"password": 1234}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "password" in response.json()["fields"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"long_polling": True, "label": 42}, "label"),
        ({"long_polling": True, "password": 12345}, "password"),
        ({"long_polling": True, "destination_ids": [7]}, "destination_ids.0"),
    ],
)
def test_numbers_for_string_fields_of_a_new_session_are_refused(api_client, owner, body, field):
    response = api_client.post("/api/v1/upload-sessions", body, format="json", **owner.auth)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_a_number_as_a_session_password_update_is_refused(api_client, owner, session):
    response = api_client.patch(
        f"/api/v1/upload-sessions/{session.pk}", {"password": 12345}, format="json", **owner.auth
    )
    assert response.status_code == 400
    assert "password" in response.json()["fields"]


def test_a_number_as_a_destination_name_is_refused(api_client, owner):
    url = f"/api/v1/projects/{owner.project.pk}/destinations"
    body = {"type": "webhook", "name": 5, "config": {"url": "https://hooks.example.com/a", "secret": "a secret!"}}
    response = api_client.post(url, body, format="json", **owner.auth)
    assert response.status_code == 400
    assert "name" in response.json()["fields"]
    destination = destination_create(
        project=owner.project,
        type="webhook",
        name="hook",
        config={"url": "https://hooks.example.com/a", "secret": "a secret!"},
    )
    response = api_client.patch(f"{url}/{destination.pk}", {"name": 5}, format="json", **owner.auth)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body, field",
    [
        ({"label": 1}, "label"),
        ({"label": "k", "allowedIps": [10]}, "allowedIps.0"),
        ({"label": "k", "allowedDomains": [10]}, "allowedDomains.0"),
        ({"label": "k", "defaultDestinations": [10]}, "defaultDestinations.0"),
    ],
)
def test_numbers_for_string_fields_of_a_new_key_are_refused(api_client, owner, body, field):
    response = api_client.post(f"/api/v1/projects/{owner.project.pk}/keys", body, format="json", **owner.auth)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_a_number_as_a_default_destination_id_is_refused(api_client, owner):
    response = api_client.put(
        f"/api/v1/keys/{owner.api_key.pk}/destinations", {"destination_ids": [3]}, format="json", **owner.auth
    )
    assert response.status_code == 400
    assert "destination_ids.0" in response.json()["fields"]
