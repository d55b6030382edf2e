"""The API-key endpoints (docs/api.md "API keys"): a key manages its project's keys; the secret is shown once."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apertur.api.authentication import request_signature
from projects.models import ApiKey, key_digest
from projects.services import api_key_create, api_key_mark_used
from sessions_app.models import UploadSession
from tests.factories import Persona
from tests.sessions_app.helpers import assert_validation_error, create_session, webhook_destination

KEY_FIELDS = {
    "id",
    "prefix",
    "label",
    "env",
    "isActive",
    "lastUsedAt",
    "maxImages",
    "allowedMimeTypes",
    "maxImageDimension",
    "longPollingEnabled",
    "defaultDestinations",
    "allowedIps",
    "allowedDomains",
    "totpEnabled",
    "clientCertEnabled",
    "clientCertFingerprint",
    "signingEnabled",
    "createdAt",
}


def keys_url(persona: Persona, *rest: str) -> str:
    return "/".join([f"/api/v1/projects/{persona.project.pk}/keys", *rest])


def create_key(api_client, persona: Persona, **body) -> dict:
    body.setdefault("label", "Mobile app")
    response = api_client.post(keys_url(persona), body, format="json", **persona.auth)
    assert response.status_code == 201, response.content
    return response.json()


def bearer(plain_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {plain_key}"}


def test_a_created_key_is_shown_once_with_its_secret_and_then_works(api_client, owner):
    created = create_key(api_client, owner, label="Mobile app", maxImages=5, allowedMimeTypes=["image/png"])

    key, plain = created["key"], created["plainTextKey"]
    assert set(created) == {"key", "plainTextKey"}
    assert set(key) == KEY_FIELDS
    assert plain.startswith("aptr_live_") and len(plain) == len("aptr_live_") + 32
    assert key["prefix"] == plain[:14]
    assert (key["label"], key["env"], key["isActive"], key["lastUsedAt"]) == ("Mobile app", "live", True, None)
    assert (key["maxImages"], key["allowedMimeTypes"], key["maxImageDimension"]) == (5, ["image/png"], None)
    assert (key["totpEnabled"], key["clientCertEnabled"], key["clientCertFingerprint"]) == (False, False, None)
    assert key["signingEnabled"] is False
    stored = ApiKey.objects.get(pk=key["id"])
    assert stored.digest == key_digest(plain) and plain not in str(stored.__dict__)

    listed = api_client.get(keys_url(owner), **bearer(plain))
    assert listed.status_code == 200
    assert plain not in listed.content.decode()
    assert [row["id"] for row in listed.json()] == [str(owner.api_key.pk), key["id"]]
    assert listed.json()[1]["lastUsedAt"] is not None


def test_a_test_key_is_test_and_so_are_the_sessions_it_creates(api_client, owner):
    created = create_key(api_client, owner, env="test")
    assert created["plainTextKey"].startswith("aptr_test_") and created["key"]["env"] == "test"
    test_key = Persona(owner.user, owner.project, ApiKey.objects.get(pk=created["key"]["id"]), created["plainTextKey"])

    session = create_session(api_client, test_key)

    assert session["env"] == "test"
    assert UploadSession.objects.get(pk=session["id"]).api_key_id == test_key.api_key.pk
    rows = api_client.get("/api/v1/sessions", **owner.auth).json()["data"]
    assert [row["env"] for row in rows] == ["test"]
    assert {row["env"] for row in api_client.get(keys_url(owner), **owner.auth).json()} == {"live", "test"}


def test_keys_without_limits_show_the_defaults_their_sessions_get(api_client, owner):
    key = create_key(api_client, owner)["key"]

    assert key["maxImages"] is None and key["maxImageDimension"] is None
    assert key["allowedMimeTypes"] == ["image/jpeg", "image/png", "image/webp", "image/heic"]
    assert (key["allowedIps"], key["allowedDomains"], key["defaultDestinations"]) == ([], [], [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "label"),
        ({"label": "x" * 201}, "label"),
        ({"label": "a", "env": "prod"}, "env"),
        ({"label": "a", "maxImages": 0}, "maxImages"),
        ({"label": "a", "maxImages": 101}, "maxImages"),
        ({"label": "a", "maxImages": "many"}, "maxImages"),
        ({"label": "a", "allowedMimeTypes": ["image/gif"]}, "allowedMimeTypes"),
        ({"label": "a", "allowedMimeTypes": []}, "allowedMimeTypes"),
        ({"label": "a", "maxImageDimension": 2**31}, "maxImageDimension"),
        ({"label": "a", "allowedIps": ["10.0.0.300"]}, "allowedIps"),
        ({"label": "a", "allowedIps": "10.0.0.1"}, "allowedIps"),
        ({"label": "a", "allowedDomains": ["not a host"]}, "allowedDomains"),
        ({"label": "a", "allowedDomains": ["*."]}, "allowedDomains"),
        ({"label": "a", "defaultDestinations": ["not-a-destination"]}, "defaultDestinations"),
        # JSON booleans only, as the schema says (DRF's BooleanField took 0, "yes", "on").
        ({"label": "a", "longPollingEnabled": "on"}, "longPollingEnabled"),
        ({"label": "a", "longPollingEnabled": 1}, "longPollingEnabled"),
    ],
)
def test_bad_key_settings_are_400_naming_the_field_and_create_nothing(api_client, owner, body, field):
    response = api_client.post(keys_url(owner), body, format="json", **owner.auth)

    assert_validation_error(response, field)
    assert ApiKey.objects.count() == 1


def test_patch_changes_limits_allow_lists_and_defaults(api_client, owner):
    destination = webhook_destination(owner)
    key = create_key(api_client, owner)["key"]

    response = api_client.patch(
        keys_url(owner, key["id"]),
        {
            "label": "Renamed",
            "maxImages": 7,
            "allowedMimeTypes": ["image/jpeg", "image/jpeg", "image/webp"],
            "maxImageDimension": 4000,
            "longPollingEnabled": True,
            "defaultDestinations": [str(destination.pk).upper()],
            "allowedIps": ["203.0.113.0/24", "2001:db8::1"],
            "allowedDomains": ["app.example.com", "*.example.org", "https://shop.example.net/"],
        },
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200, response.content
    updated = response.json()
    assert (updated["label"], updated["maxImages"], updated["maxImageDimension"]) == ("Renamed", 7, 4000)
    assert updated["allowedMimeTypes"] == ["image/jpeg", "image/webp"]
    assert updated["longPollingEnabled"] is True
    assert updated["defaultDestinations"] == [str(destination.pk)]
    assert updated["allowedIps"] == ["203.0.113.0/24", "2001:db8::1"]
    assert updated["allowedDomains"] == ["app.example.com", "*.example.org", "https://shop.example.net/"]
    assert api_client.get(keys_url(owner), **owner.auth).json()[1] == updated


def test_patch_with_null_lifts_a_limit(api_client, owner):
    key = create_key(api_client, owner, maxImages=3, allowedMimeTypes=["image/png"], maxImageDimension=10)["key"]

    response = api_client.patch(
        keys_url(owner, key["id"]),
        {"maxImages": None, "allowedMimeTypes": None, "maxImageDimension": None},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200, response.content
    assert (response.json()["maxImages"], response.json()["maxImageDimension"]) == (None, None)
    assert len(response.json()["allowedMimeTypes"]) == 4


def test_the_limits_a_key_sets_through_the_api_apply_to_the_sessions_it_creates(api_client, owner):
    destination = webhook_destination(owner)
    created = create_key(api_client, owner, maxImages=4, allowedMimeTypes=["image/webp"], maxImageDimension=640)
    plain = created["plainTextKey"]
    response = api_client.put(
        f"/api/v1/keys/{created['key']['id']}/destinations",
        {"destination_ids": [str(destination.pk)], "long_polling_enabled": True},
        format="json",
        **owner.auth,
    )
    assert response.status_code == 200, response.content

    session = api_client.post("/api/v1/upload-sessions", {}, format="json", **bearer(plain)).json()

    assert (session["max_images"], session["long_polling"]) == (4, True)
    assert [row["id"] for row in session["destinations"]] == [str(destination.pk)]
    public = api_client.get(f"/api/v1/upload/{session['id']}/session").json()
    assert public["effectiveAllowedMimeTypes"] == ["image/webp"]
    assert public["effectiveMaxImageDimension"] == 640


def test_put_destinations_replaces_the_defaults_and_answers_the_clients_shape(api_client, owner):
    first, second = webhook_destination(owner, "first"), webhook_destination(owner, "second")
    key = create_key(api_client, owner, defaultDestinations=[str(first.pk)])["key"]
    assert key["defaultDestinations"] == [str(first.pk)]
    second.is_active = False
    second.save()

    response = api_client.put(
        f"/api/v1/keys/{key['id']}/destinations",
        {"destination_ids": [str(second.pk)], "long_polling_enabled": True},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "destinations": [{"id": str(second.pk), "type": "webhook", "name": "second", "isActive": False}],
        "longPollingEnabled": True,
    }
    stored = ApiKey.objects.get(pk=key["id"])
    assert [destination.pk for destination in stored.default_destinations.all()] == [second.pk]
    assert stored.long_polling_enabled is True


def test_put_destinations_refuses_a_foreign_or_deleted_destination(api_client, owner, outsider):
    foreign = webhook_destination(outsider, "foreign")
    key = create_key(api_client, owner)["key"]

    response = api_client.put(
        f"/api/v1/keys/{key['id']}/destinations",
        {"destination_ids": [str(foreign.pk)], "long_polling_enabled": False},
        format="json",
        **owner.auth,
    )

    body = assert_validation_error(response, "destination_ids")
    assert str(foreign.pk) in body["fields"]["destination_ids"][0]
    assert "foreign" not in response.content.decode()


def test_a_deleted_key_no_longer_authenticates_and_its_sessions_stay(api_client, owner):
    created = create_key(api_client, owner)
    other = Persona(owner.user, owner.project, ApiKey.objects.get(pk=created["key"]["id"]), created["plainTextKey"])
    session = create_session(api_client, other)

    response = api_client.delete(keys_url(owner, created["key"]["id"]), **owner.auth)

    assert response.status_code == 204 and response.content == b""
    refused = api_client.get("/api/v1/sessions", **other.auth)
    assert (refused.status_code, refused.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert UploadSession.objects.get(pk=session["id"]).api_key_id is None
    assert [row["id"] for row in api_client.get(keys_url(owner), **owner.auth).json()] == [str(owner.api_key.pk)]


def test_a_deactivated_key_is_refused_and_can_be_reactivated(api_client, owner):
    created = create_key(api_client, owner)
    key_id = created["key"]["id"]

    deactivated = api_client.patch(keys_url(owner, key_id), {"isActive": False}, format="json", **owner.auth)
    assert (deactivated.status_code, deactivated.json()["isActive"]) == (200, False)
    assert api_client.get("/api/v1/sessions", **bearer(created["plainTextKey"])).status_code == 401

    api_client.patch(keys_url(owner, key_id), {"isActive": True}, format="json", **owner.auth)
    assert api_client.get("/api/v1/sessions", **bearer(created["plainTextKey"])).status_code == 200


def test_a_key_cannot_revoke_itself(api_client, owner):
    deleted = api_client.delete(keys_url(owner, str(owner.api_key.pk)), **owner.auth)
    deactivated = api_client.patch(
        keys_url(owner, str(owner.api_key.pk)), {"isActive": False, "label": "x"}, format="json", **owner.auth
    )

    for response in (deleted, deactivated):
        assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN")
    stored = ApiKey.objects.get(pk=owner.api_key.pk)
    assert (stored.is_active, stored.label) == (True, "owner")
    assert api_client.get("/api/v1/sessions", **owner.auth).status_code == 200


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("post", "", {"label": "intruder"}),
        ("patch", "/{key}", {"label": "hijacked", "isActive": False}),
        ("delete", "/{key}", None),
        ("post", "/{key}/signing-secret", None),
        ("delete", "/{key}/signing-secret", None),
    ],
)
def test_another_projects_keys_are_not_found(api_client, owner, outsider, method, suffix, body):
    path = f"/api/v1/projects/{owner.project.pk}/keys" + suffix.format(key=owner.api_key.pk)

    response = getattr(api_client, method)(path, body, format="json", **outsider.auth)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), response.content
    assert owner.api_key.prefix not in response.content.decode()
    stored = ApiKey.objects.get(pk=owner.api_key.pk)
    assert (stored.label, stored.is_active, stored.signing_secret) == ("owner", True, None)
    assert ApiKey.objects.filter(project=owner.project).count() == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/api/v1/projects/{mine}/keys/{theirs}", {"label": "hijacked"}),
        ("delete", "/api/v1/projects/{mine}/keys/{theirs}", None),
        ("put", "/api/v1/keys/{theirs}/destinations", {"destination_ids": []}),
        ("post", "/api/v1/projects/{mine}/keys/{theirs}/signing-secret", None),
        ("patch", "/api/v1/projects/{mine}/keys/not-a-uuid", {"label": "x"}),
    ],
)
def test_another_projects_key_is_not_found_through_ones_own_project(api_client, owner, outsider, method, path, body):
    url = path.format(mine=outsider.project.pk, theirs=owner.api_key.pk)

    response = getattr(api_client, method)(url, body, format="json", **outsider.auth)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), response.content
    assert ApiKey.objects.get(pk=owner.api_key.pk).label == "owner"


def signed(secret: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "HTTP_X_APTR_TIMESTAMP": timestamp,
        "HTTP_X_APTR_SIGNATURE": request_signature(secret, timestamp, method, path, body),
    }


def test_a_signing_secret_is_shown_once_then_required_then_rotated_then_removed(api_client, owner):
    created = create_key(api_client, owner)
    key_id, plain = created["key"]["id"], created["plainTextKey"]
    url = keys_url(owner, key_id, "signing-secret")

    first = api_client.post(url, **owner.auth)

    assert first.status_code == 201, first.content
    secret = first.json()["signingSecret"]
    assert len(secret) == 64 and first.json()["key"]["signingEnabled"] is True
    listed = api_client.get(keys_url(owner), **owner.auth)
    assert secret not in listed.content.decode()
    assert [row["signingEnabled"] for row in listed.json()] == [False, True]
    unsigned = api_client.get("/api/v1/sessions", **bearer(plain))
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "INVALID_SIGNATURE")
    good = api_client.get("/api/v1/sessions", **bearer(plain), **signed(secret, "GET", "/api/v1/sessions"))
    assert good.status_code == 200, good.content

    rotated = api_client.post(url, **owner.auth).json()["signingSecret"]

    assert rotated != secret
    old = api_client.get("/api/v1/sessions", **bearer(plain), **signed(secret, "GET", "/api/v1/sessions"))
    assert old.status_code == 401
    new = api_client.get("/api/v1/sessions", **bearer(plain), **signed(rotated, "GET", "/api/v1/sessions"))
    assert new.status_code == 200

    removed = api_client.delete(url, **owner.auth)

    assert removed.status_code == 204
    assert api_client.get("/api/v1/sessions", **bearer(plain)).status_code == 200
    assert ApiKey.objects.get(pk=key_id).signing_secret is None


def test_last_used_at_is_written_at_most_once_a_minute(api_client, owner):
    def key_updates() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert api_client.get("/api/v1/sessions", **owner.auth).status_code == 200
        return [query["sql"] for query in captured.captured_queries if query["sql"].startswith("UPDATE")]

    assert len(key_updates()) == 1  # never used: the first request records it
    first_use = ApiKey.objects.get(pk=owner.api_key.pk).last_used_at
    assert first_use is not None

    assert [key_updates() for _ in range(3)] == [[], [], []]
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at == first_use

    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now() - timedelta(seconds=61))
    assert len(key_updates()) == 1
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at > first_use


def test_a_stale_copy_of_the_key_does_not_write_again_once_another_request_did(owner):
    stale = ApiKey.objects.get(pk=owner.api_key.pk)
    now = timezone.now()
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=now - timedelta(seconds=5))

    with CaptureQueriesContext(connection) as captured:
        api_key_mark_used(api_key=stale, now=now)

    [update] = [query["sql"] for query in captured.captured_queries]
    assert "last_used_at" in update.lower() and "WHERE" in update
    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at == now - timedelta(seconds=5)


def test_the_key_list_costs_the_same_queries_for_one_key_or_many(api_client, owner, django_assert_max_num_queries):
    destination = webhook_destination(owner)
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now())
    with CaptureQueriesContext(connection) as one:
        api_client.get(keys_url(owner), **owner.auth)
    for index in range(6):
        api_key, _ = api_key_create(project=owner.project, label=f"key {index}")
        api_key.default_destinations.set([destination])

    with django_assert_max_num_queries(len(one)):
        response = api_client.get(keys_url(owner), **owner.auth)

    assert len(response.json()) == 7
    assert response.json()[-1]["defaultDestinations"] == [str(destination.pk)]


def test_a_key_is_switched_off_only_by_a_json_false(api_client, owner):
    other = create_key(api_client, owner, label="other")
    url = keys_url(owner, other["key"]["id"])

    refused = api_client.patch(url, {"isActive": 0}, format="json", **owner.auth)

    assert_validation_error(refused, "isActive")
    assert ApiKey.objects.get(pk=other["key"]["id"]).is_active
