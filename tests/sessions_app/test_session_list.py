"""Listing sessions (docs/api.md "Listing sessions"): `GET /api/v1/sessions` pages and `GET /api/v1/sessions/recent`."""

from datetime import timedelta

from django.utils import timezone

from delivery.models import Delivery
from sessions_app.models import UploadSession
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, upload, webhook_destination

ROW_FIELDS = {
    "id",
    "createdAt",
    "expiresAt",
    "status",
    "projectId",
    "projectName",
    "imagesCount",
    "imagesDelivered",
    "imagesFailed",
    "destinationsCount",
    "tags",
    "longPollingEnabled",
    "label",
    "env",
}


def make_sessions(api_client, persona, count: int) -> list[str]:
    ids = [create_session(api_client, persona, label=f"s{index}")["id"] for index in range(count)]
    # Distinct creation times, oldest first, so "newest first" is observable.
    for age, session_id in enumerate(reversed(ids)):
        UploadSession.objects.filter(pk=session_id).update(created_at=timezone.now() - timedelta(minutes=age))
    return ids


def test_sessions_are_listed_newest_first_in_pages_of_the_keys_project_only(api_client, owner, outsider):
    ids = make_sessions(api_client, owner, 5)
    create_session(api_client, outsider)

    first = api_client.get("/api/v1/sessions?page=1&pageSize=2", **owner.auth)
    last = api_client.get("/api/v1/sessions?page=3&pageSize=2", **owner.auth)

    assert first.status_code == 200, first.content
    body = first.json()
    assert (body["total"], body["page"], body["pageSize"], body["totalPages"]) == (5, 1, 2, 3)
    assert [row["id"] for row in body["data"]] == [ids[4], ids[3]]
    assert [row["id"] for row in last.json()["data"]] == [ids[0]]
    assert set(body["data"][0]) == ROW_FIELDS
    assert first["X-RateLimit-Limit"] == "300"


def test_list_defaults_and_bad_paging_parameters(api_client, owner):
    make_sessions(api_client, owner, 3)
    body = api_client.get("/api/v1/sessions", **owner.auth).json()
    assert (body["page"], body["pageSize"], len(body["data"])) == (1, 20, 3)
    for query in ("page=0", "pageSize=0", "pageSize=101", "page=abc"):
        response = api_client.get(f"/api/v1/sessions?{query}", **owner.auth)
        assert response.status_code == 400, query
        assert response.json()["code"] == "VALIDATION_ERROR"


def test_recent_sessions_are_a_bare_array_limited_to_50(api_client, owner):
    ids = make_sessions(api_client, owner, 12)
    default = api_client.get("/api/v1/sessions/recent", **owner.auth).json()
    assert [row["id"] for row in default] == list(reversed(ids))[:10]
    assert len(api_client.get("/api/v1/sessions/recent?limit=3", **owner.auth).json()) == 3
    assert api_client.get("/api/v1/sessions/recent?limit=51", **owner.auth).status_code == 400


def test_rows_count_delivered_and_failed_images_and_show_expiry(api_client, owner):
    destinations = [webhook_destination(owner, "a"), webhook_destination(owner, "b")]
    session = create_session(
        api_client,
        owner,
        long_polling=False,
        destination_ids=[str(d.pk) for d in destinations],
        tags=["order:1"],
        label="Front desk",
    )
    images = [upload(api_client, session["id"], image_bytes()).json()["id"] for _ in range(3)]
    Delivery.objects.filter(image_id=images[0]).update(status="delivered")
    Delivery.objects.filter(image_id=images[1], destination=destinations[0]).update(status="delivered")
    Delivery.objects.filter(image_id=images[1], destination=destinations[1]).update(status="failed")
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    [row] = api_client.get("/api/v1/sessions/recent", **owner.auth).json()

    assert row["imagesCount"] == 3
    assert (row["imagesDelivered"], row["imagesFailed"]) == (1, 1)
    assert row["destinationsCount"] == 2
    assert (row["label"], row["tags"], row["env"], row["status"]) == ("Front desk", ["order:1"], "live", "expired")
    assert (row["projectId"], row["projectName"]) == (str(owner.project.pk), owner.project.name)
    assert row["longPollingEnabled"] is False


def test_listing_a_page_costs_the_same_queries_whatever_its_size(api_client, owner, django_assert_max_num_queries):
    destination = webhook_destination(owner)
    for _ in range(15):
        session = create_session(api_client, owner, long_polling=False, destination_ids=[str(destination.pk)])
        upload(api_client, session["id"], image_bytes())
    with django_assert_max_num_queries(8):
        response = api_client.get("/api/v1/sessions?pageSize=15", **owner.auth)
    assert len(response.json()["data"]) == 15
