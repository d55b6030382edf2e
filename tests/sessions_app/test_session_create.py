"""POST /api/v1/upload-sessions (docs/api.md "Creating a session"): every validation rule, the defaults, the key's
defaults, the 201 shape."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import check_password
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from destinations.services import destination_delete
from projects.models import ALL_MIME_TYPES
from projects.services import api_key_create
from sessions_app.models import UploadSession
from tests.sessions_app.helpers import assert_validation_error, create_session, webhook_destination

CREATE = "/api/v1/upload-sessions"


def post_create(api_client, persona, body):
    return api_client.post(CREATE, body, format="json", **persona.auth)


def public_session(api_client, session_id: str) -> dict:
    response = api_client.get(f"/api/v1/upload/{session_id}/session")
    assert response.status_code == 200, response.content
    return response.json()


def hours_from_now(moment: str) -> float:
    return (parse_datetime(moment) - timezone.now()).total_seconds() / 3600


# --- destinations and long polling -------------------------------------------------------------------


def test_session_without_destination_and_without_long_polling_is_refused_with_400(api_client, owner):
    response = post_create(api_client, owner, {})

    assert_validation_error(response, "destination_ids")
    assert not UploadSession.objects.exists()


def test_explicitly_empty_destination_list_without_long_polling_is_refused_with_400(api_client, owner):
    webhook_destination(owner)  # exists, but the body asks for none
    owner.api_key.default_destinations.set([])

    response = post_create(api_client, owner, {"destination_ids": []})

    assert_validation_error(response, "destination_ids")


@pytest.mark.parametrize("kind", ["random uuid", "not a uuid", "another project's", "inactive", "deleted"])
def test_unusable_destination_id_is_refused_with_400_naming_the_id(api_client, owner, outsider, kind):
    if kind == "random uuid":
        bad_id = str(uuid.uuid4())
    elif kind == "not a uuid":
        bad_id = "dest-123"
    elif kind == "another project's":
        bad_id = str(webhook_destination(outsider).pk)
    else:
        destination = webhook_destination(owner)
        if kind == "inactive":
            destination.is_active = False
            destination.save()
        else:
            destination_delete(destination=destination)
        bad_id = str(destination.pk)
    good = webhook_destination(owner, name="good")

    response = post_create(api_client, owner, {"destination_ids": [str(good.pk), bad_id]})

    body = assert_validation_error(response, "destination_ids")
    assert bad_id in " ".join(body["fields"]["destination_ids"])
    assert str(good.pk) not in " ".join(body["fields"]["destination_ids"])
    assert not UploadSession.objects.exists()


def test_session_with_a_destination_lists_it_and_may_skip_long_polling(api_client, owner):
    destination = webhook_destination(owner, name="Production hook")

    session = create_session(api_client, owner, destination_ids=[str(destination.pk)], long_polling=False)

    assert session["destinations"] == [{"id": str(destination.pk), "type": "webhook", "name": "Production hook"}]
    assert session["long_polling"] is False


def test_long_polling_alone_is_enough_for_a_session(api_client, owner):
    session = create_session(api_client, owner, long_polling=True)

    assert session["destinations"] == []
    assert session["long_polling"] is True


# --- tags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [[f"tag{number}" for number in range(21)], ["x" * 129], [""], "not-a-list", [None], [["nested"]], [1, 2], [True]],
    ids=["21 tags", "tag of 129 chars", "empty tag", "a string", "null tag", "nested list", "numbers", "a boolean"],
)
def test_invalid_tags_are_refused_with_400(api_client, owner, tags):
    response = post_create(api_client, owner, {"long_polling": True, "tags": tags})

    assert_validation_error(response, "tags")


def test_tags_that_are_not_strings_are_refused_with_400_naming_each_one(api_client, owner):
    response = post_create(api_client, owner, {"long_polling": True, "tags": ["ok", 1, 2.5]})

    assert response.status_code == 400, response.content
    assert response.json() == {
        "message": "tags.1: Not a valid string.",
        "code": "VALIDATION_ERROR",
        "statusCode": 400,
        "error": "Bad Request",
        "fields": {"tags.1": ["Not a valid string."], "tags.2": ["Not a valid string."]},
    }
    assert not UploadSession.objects.exists()


def test_twenty_tags_of_128_chars_are_accepted_and_echoed(api_client, owner):
    tags = [f"{number:02d}" + "x" * 126 for number in range(20)]

    session = create_session(api_client, owner, tags=tags)

    assert session["tags"] == tags
    assert public_session(api_client, session["id"])["tags"] == tags


# --- expiry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hours", [0, 169, -1, "soon", 1.5])
def test_expires_in_hours_outside_1_to_168_is_refused_with_400(api_client, owner, hours):
    response = post_create(api_client, owner, {"long_polling": True, "expires_in_hours": hours})

    assert_validation_error(response, "expires_in_hours")


@pytest.mark.parametrize("hours", [1, 168])
def test_expires_in_hours_at_the_bounds_sets_the_expiry(api_client, owner, hours):
    session = create_session(api_client, owner, expires_in_hours=hours)

    assert hours - 0.01 < hours_from_now(session["expires_at"]) <= hours


@pytest.mark.parametrize(
    "expires_at",
    [
        lambda now: (now - timedelta(minutes=1)).isoformat(),
        lambda now: (now + timedelta(hours=168, minutes=1)).isoformat(),
        lambda now: "next tuesday",
        lambda now: "9999-12-31T23:59:59-14:00",
    ],
    ids=["in the past", "beyond 168 hours", "not a date", "out of range"],
)
def test_expires_at_in_the_past_or_too_far_ahead_is_refused_with_400(api_client, owner, expires_at):
    response = post_create(api_client, owner, {"long_polling": True, "expires_at": expires_at(timezone.now())})

    assert_validation_error(response, "expires_at")


def test_expires_at_within_168_hours_is_used_as_given(api_client, owner):
    wanted = (timezone.now() + timedelta(hours=100)).replace(microsecond=0)

    session = create_session(api_client, owner, expires_at=wanted.isoformat())

    assert parse_datetime(session["expires_at"]) == wanted


def test_expires_at_and_expires_in_hours_together_are_refused_with_400(api_client, owner):
    response = post_create(
        api_client,
        owner,
        {
            "long_polling": True,
            "expires_in_hours": 2,
            "expires_at": (timezone.now() + timedelta(hours=3)).isoformat(),
        },
    )

    assert_validation_error(response, "expires_at")


# --- limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_images", [0, -3, 101, 10**30, "many"])
def test_max_images_below_1_or_above_the_cap_is_refused_with_400(api_client, owner, max_images):
    response = post_create(api_client, owner, {"long_polling": True, "max_images": max_images})

    assert_validation_error(response, "max_images")


def test_max_images_cap_follows_the_setting(api_client, owner, settings):
    settings.APERTUR_MAX_IMAGES_CAP = 5

    assert_validation_error(post_create(api_client, owner, {"long_polling": True, "max_images": 6}), "max_images")
    assert create_session(api_client, owner, max_images=5)["max_images"] == 5


def test_max_images_at_the_cap_is_accepted(api_client, owner):
    assert create_session(api_client, owner, max_images=100)["max_images"] == 100


@pytest.mark.parametrize(
    "mime_types", [["image/gif"], ["image/jpeg", "text/plain"], [], "image/jpeg"], ids=["gif", "text", "empty", "str"]
)
def test_allowed_mime_types_outside_the_four_image_types_are_refused_with_400(api_client, owner, mime_types):
    response = post_create(api_client, owner, {"long_polling": True, "allowed_mime_types": mime_types})

    assert_validation_error(response, "allowed_mime_types")


def test_allowed_mime_types_subset_is_stored(api_client, owner):
    session = create_session(api_client, owner, allowed_mime_types=["image/png", "image/heic"])

    assert public_session(api_client, session["id"])["effectiveAllowedMimeTypes"] == ["image/png", "image/heic"]


@pytest.mark.parametrize("dimension", [0, -1, 10**30])
def test_max_image_dimension_out_of_range_is_refused_with_400(api_client, owner, dimension):
    response = post_create(api_client, owner, {"long_polling": True, "max_image_dimension": dimension})

    assert_validation_error(response, "max_image_dimension")


def test_label_longer_than_200_chars_is_refused_with_400(api_client, owner):
    response = post_create(api_client, owner, {"long_polling": True, "label": "x" * 201})

    assert_validation_error(response, "label")


# --- password --------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["abc", "p" * 129, ""], ids=["3 chars", "129 chars", "empty"])
def test_password_shorter_than_4_or_longer_than_128_is_refused_with_400(api_client, owner, password):
    response = post_create(api_client, owner, {"long_polling": True, "password": password})

    assert_validation_error(response, "password")


@pytest.mark.parametrize("password", ["abcd", "p" * 128])
def test_password_of_4_to_128_chars_protects_the_session_and_is_stored_hashed(api_client, owner, password):
    session = create_session(api_client, owner, password=password)

    assert session["password_protected"] is True
    stored = UploadSession.objects.get(pk=session["id"]).password_hash
    assert password not in stored
    assert check_password(password, stored)


# --- defaults --------------------------------------------------------------------------------------


def test_defaults_are_24_hours_10_images_all_four_types_no_dimension_no_password(api_client, owner):
    session = create_session(api_client, owner)

    assert 23.99 < hours_from_now(session["expires_at"]) <= 24
    assert session["max_images"] == 10
    assert session["password_protected"] is False
    assert session["tags"] == []
    public = public_session(api_client, session["id"])
    assert public["effectiveMaxImages"] == 10
    assert public["effectiveAllowedMimeTypes"] == ALL_MIME_TYPES
    assert public["effectiveMaxImageDimension"] is None
    assert public["effectiveMaxImageSizeMb"] == 20


def test_key_defaults_apply_when_the_body_omits_them(api_client, owner):
    destination = webhook_destination(owner, name="Key default")
    owner.api_key.max_images = 3
    owner.api_key.allowed_mime_types = ["image/png"]
    owner.api_key.max_image_dimension = 800
    owner.api_key.long_polling_enabled = True
    owner.api_key.save()
    owner.api_key.default_destinations.set([destination])

    session = create_session(api_client, owner, long_polling=False)

    assert session["max_images"] == 3
    assert session["long_polling"] is True  # the key turns it on even when the body says false
    assert session["destinations"] == [{"id": str(destination.pk), "type": "webhook", "name": "Key default"}]
    public = public_session(api_client, session["id"])
    assert public["effectiveAllowedMimeTypes"] == ["image/png"]
    assert public["effectiveMaxImageDimension"] == 800


def test_body_values_override_the_key_defaults(api_client, owner):
    default = webhook_destination(owner, name="Key default")
    chosen = webhook_destination(owner, name="Chosen")
    owner.api_key.max_images = 3
    owner.api_key.allowed_mime_types = ["image/png"]
    owner.api_key.save()
    owner.api_key.default_destinations.set([default])

    session = create_session(
        api_client, owner, destination_ids=[str(chosen.pk)], max_images=7, allowed_mime_types=["image/webp"]
    )

    assert [destination["name"] for destination in session["destinations"]] == ["Chosen"]
    assert session["max_images"] == 7
    assert public_session(api_client, session["id"])["effectiveAllowedMimeTypes"] == ["image/webp"]


def test_key_default_destinations_alone_satisfy_the_destination_rule(api_client, owner):
    destination = webhook_destination(owner)
    owner.api_key.default_destinations.set([destination])

    response = post_create(api_client, owner, {})

    assert response.status_code == 201, response.content
    assert [row["id"] for row in response.json()["destinations"]] == [str(destination.pk)]


def test_inactive_key_default_destination_is_skipped(api_client, owner):
    destination = webhook_destination(owner)
    destination.is_active = False
    destination.save()
    owner.api_key.default_destinations.set([destination])

    assert_validation_error(post_create(api_client, owner, {}), "destination_ids")


# --- the 201 document ------------------------------------------------------------------------------


def test_created_session_document_has_the_spec_shape_and_uses_the_public_url(api_client, owner, settings):
    settings.APERTUR_PUBLIC_URL = "https://photos.example.test"
    destination = webhook_destination(owner, name="Production hook")

    response = api_client.post(
        CREATE,
        {"destination_ids": [str(destination.pk)], "tags": ["event:wedding"], "label": "Wedding"},
        format="json",
        HTTP_HOST="127.0.0.1",
        **owner.auth,
    )

    assert response.status_code == 201, response.content
    body = response.json()
    session_id = body["id"]
    assert session_id.startswith("sess_") and len(session_id) == len("sess_") + 26
    assert body["uuid"] == session_id
    assert body["upload_url"] == f"https://photos.example.test/u/{session_id}"
    assert body["qr_url"] == f"https://photos.example.test/api/v1/upload-sessions/{session_id}/qr"
    assert body["qr_specs"]["endpoint"] == f"/api/v1/upload-sessions/{session_id}/qr"
    assert body["qr_specs"]["formats"] == ["png", "svg", "jpeg"]
    assert set(body["qr_specs"]["params"]) == {"format", "size", "style", "fg", "bg", "borderSize", "borderColor"}
    assert body["destinations"] == [{"id": str(destination.pk), "type": "webhook", "name": "Production hook"}]
    assert body["long_polling"] is False
    assert body["expires_at"].endswith("Z")
    assert body["password_protected"] is False
    assert body["env"] == "live"
    assert body["status"] == "pending"
    assert body["tags"] == ["event:wedding"]
    assert body["max_images"] == 10
    assert UploadSession.objects.get(pk=session_id).label == "Wedding"


def test_session_created_with_a_test_key_is_a_test_session(api_client, owner):
    _, plain = api_key_create(project=owner.project, label="test", env="test")

    response = api_client.post(CREATE, {"long_polling": True}, format="json", HTTP_AUTHORIZATION=f"Bearer {plain}")

    assert response.status_code == 201, response.content
    assert response.json()["env"] == "test"


def test_session_belongs_to_the_keys_project_and_key(api_client, owner):
    session = create_session(api_client, owner)

    stored = UploadSession.objects.get(pk=session["id"])
    assert stored.project == owner.project
    assert stored.api_key == owner.api_key
