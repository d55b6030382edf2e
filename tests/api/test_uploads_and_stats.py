"""The uploads history and the stats (docs/api.md "Uploads", "Stats"): the key's project only, in the official
clients' shapes, at a fixed number of queries."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from delivery.models import Delivery
from destinations.services import destination_create
from projects.models import ApiKey
from projects.services import api_key_create
from sessions_app.models import Image, UploadSession
from tests.factories import Persona, image_bytes
from tests.sessions_app.helpers import assert_validation_error, create_session, upload, webhook_destination

ROW_FIELDS = {
    "id",
    "filename",
    "sizeBytes",
    "mimeType",
    "source",
    "isEncrypted",
    "env",
    "createdAt",
    "sessionId",
    "projectId",
    "projectName",
    "destinationsTotal",
    "destinationsDelivered",
    "destinationsFailed",
    "destinationsBreakdown",
    "status",
}


def s3_destination(persona: Persona):
    return destination_create(
        project=persona.project,
        type="s3",
        name="Bucket",
        config={"endpoint": "http://127.0.0.1:9", "region": "us-east-1", "bucket": "b", "accessKey": "a"}
        | {"secretKey": "s3cret-value"},
    )


def upload_with_outcomes(api_client, persona: Persona, session_id: str, *outcomes: str, **extra) -> str:
    """Upload one image, then give its deliveries (in destination order) the statuses a worker would have."""
    response = upload(api_client, session_id, image_bytes(), **extra)
    assert response.status_code == 201, response.content
    image_id = response.json()["id"]
    deliveries = Delivery.objects.filter(image_id=image_id).order_by("destination__created_at")
    for delivery, status in zip(deliveries, outcomes, strict=True):
        Delivery.objects.filter(pk=delivery.pk).update(status=status)
    return image_id


@pytest.fixture
def history(api_client, owner) -> dict[str, str]:
    """Five images, oldest first: partial, delivered, failed, pending, stored only (a pull-only session)."""
    destinations = [webhook_destination(owner, "a"), webhook_destination(owner, "b"), s3_destination(owner)]
    pushed = create_session(api_client, owner, long_polling=False, destination_ids=[str(d.pk) for d in destinations])
    pulled = create_session(api_client, owner, long_polling=True)
    return {
        "partial": upload_with_outcomes(api_client, owner, pushed["id"], "delivered", "failed", "delivered"),
        "delivered": upload_with_outcomes(api_client, owner, pushed["id"], "delivered", "delivered", "delivered"),
        "failed": upload_with_outcomes(api_client, owner, pushed["id"], "failed", "failed", "failed"),
        "pending": upload_with_outcomes(api_client, owner, pushed["id"], "delivered", "pending", "delivering"),
        "stored_only": upload_with_outcomes(api_client, owner, pulled["id"], source="gallery"),
        "pushed": pushed["id"],
        "pulled": pulled["id"],
    }


def test_each_upload_row_tells_its_deliveries_and_their_status(api_client, owner, history):
    response = api_client.get("/api/v1/uploads", **owner.auth)

    assert response.status_code == 200, response.content
    page = response.json()
    assert (page["total"], page["page"], page["pageSize"], page["totalPages"]) == (5, 1, 20, 1)
    rows = {row["id"]: row for row in page["data"]}
    assert [row["id"] for row in page["data"]] == [
        history[name] for name in ("stored_only", "pending", "failed", "delivered", "partial")
    ]
    assert all(set(row) == ROW_FIELDS for row in page["data"])
    assert {name: rows[history[name]]["status"] for name in ("partial", "delivered", "failed", "pending")} == {
        "partial": "partial",
        "delivered": "delivered",
        "failed": "failed",
        "pending": "pending",
    }
    partial = rows[history["partial"]]
    assert (partial["destinationsTotal"], partial["destinationsDelivered"], partial["destinationsFailed"]) == (3, 2, 1)
    assert partial["destinationsBreakdown"] == [{"type": "s3", "count": 1}, {"type": "webhook", "count": 2}]
    assert (partial["filename"], partial["mimeType"], partial["source"]) == ("photo.jpg", "image/jpeg", "camera")
    assert partial["sizeBytes"] == Image.objects.get(pk=history["partial"]).size_bytes
    assert (partial["isEncrypted"], partial["env"], partial["sessionId"]) == (False, "live", history["pushed"])
    assert (partial["projectId"], partial["projectName"]) == (str(owner.project.pk), owner.project.name)
    assert partial["createdAt"].endswith("Z")
    stored_only = rows[history["stored_only"]]
    assert (stored_only["status"], stored_only["destinationsTotal"], stored_only["source"]) == (
        "stored_only",
        0,
        "gallery",
    )
    assert stored_only["destinationsBreakdown"] == []


def test_uploads_are_paginated_like_sessions(api_client, owner, history):
    first = api_client.get("/api/v1/uploads?page=1&pageSize=2", **owner.auth).json()
    third = api_client.get("/api/v1/uploads?page=3&pageSize=2", **owner.auth).json()
    beyond = api_client.get("/api/v1/uploads?page=4&pageSize=2", **owner.auth).json()

    assert (first["total"], first["totalPages"], len(first["data"])) == (5, 3, 2)
    assert [row["id"] for row in third["data"]] == [history["partial"]]
    assert (beyond["data"], beyond["page"]) == ([], 4)


def test_recent_uploads_are_a_bare_array_newest_first(api_client, owner, history):
    recent = api_client.get("/api/v1/uploads/recent?limit=2", **owner.auth)
    default = api_client.get("/api/v1/uploads/recent", **owner.auth)

    assert [row["id"] for row in recent.json()] == [history["stored_only"], history["pending"]]
    assert len(default.json()) == 5 and set(default.json()[0]) == ROW_FIELDS


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/uploads?page=0", "page"),
        ("/api/v1/uploads?pageSize=101", "pageSize"),
        ("/api/v1/uploads?pageSize=abc", "pageSize"),
        ("/api/v1/uploads/recent?limit=51", "limit"),
        ("/api/v1/uploads/recent?limit=0", "limit"),
        ("/api/v1/stats?from=yesterday", "from"),
        ("/api/v1/stats?to=2026-13-01", "to"),
        ("/api/v1/stats?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(api_client, owner, url, field):
    assert_validation_error(api_client.get(url, **owner.auth), field)


def test_another_projects_uploads_and_counts_are_invisible(api_client, owner, outsider, history):
    uploads = api_client.get("/api/v1/uploads", **outsider.auth).json()
    recent = api_client.get("/api/v1/uploads/recent", **outsider.auth).json()
    stats = api_client.get("/api/v1/stats", **outsider.auth).json()

    assert (uploads["data"], uploads["total"], recent) == ([], 0, [])
    assert (stats["sessionsTotal"], stats["imagesUploaded"], stats["activeKeys"]) == (0, 0, 1)
    assert stats["topProjects"] == [{"id": str(outsider.project.pk), "name": outsider.project.name, "sessions": 0}]


def test_an_encrypted_test_upload_says_so(api_client, owner):
    _, plain = api_key_create(project=owner.project, label="sandbox", env="test")
    test_key = Persona(owner.user, owner.project, ApiKey.objects.get(label="sandbox"), plain)
    session = create_session(api_client, test_key)
    image_id = upload_with_outcomes(api_client, test_key, session["id"])
    Image.objects.filter(pk=image_id).update(is_encrypted=True)

    [row] = api_client.get("/api/v1/uploads/recent", **owner.auth).json()

    assert (row["env"], row["isEncrypted"]) == ("test", True)


def test_the_uploads_list_costs_the_same_queries_for_one_image_or_a_full_page(
    api_client, owner, django_assert_max_num_queries
):
    destinations = [webhook_destination(owner, "a"), s3_destination(owner)]
    session = create_session(api_client, owner, long_polling=False, destination_ids=[str(d.pk) for d in destinations])
    upload_with_outcomes(api_client, owner, session["id"], "delivered", "failed")
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now())
    # the key, the count, the page of images, their deliveries
    with django_assert_max_num_queries(4):
        assert len(api_client.get("/api/v1/uploads", **owner.auth).json()["data"]) == 1
    for _ in range(7):
        upload_with_outcomes(api_client, owner, session["id"], "delivered", "pending")
    other = create_session(api_client, owner)
    upload_with_outcomes(api_client, owner, other["id"])

    with django_assert_max_num_queries(4):
        assert len(api_client.get("/api/v1/uploads", **owner.auth).json()["data"]) == 9
    with django_assert_max_num_queries(4):
        assert len(api_client.get("/api/v1/uploads/recent?limit=50", **owner.auth).json()) == 9


def test_stats_count_the_projects_sessions_images_and_deliveries(
    api_client, owner, history, django_assert_max_num_queries
):
    api_key_create(project=owner.project, label="spare")
    api_key_create(project=owner.project, label="revoked", is_active=False)
    ApiKey.objects.filter(pk=owner.api_key.pk).update(last_used_at=timezone.now())

    # the key, then five aggregates
    with django_assert_max_num_queries(6):
        response = api_client.get("/api/v1/stats", **owner.auth)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "sessionsThisMonth": 2,
        "sessionsInRange": 2,
        "sessionsTotal": 2,
        "imagesUploaded": 5,
        "imagesDelivered": 1,
        # deliveries: delivered 2 + 3 + 0 + 1 = 6, failed 1 + 0 + 3 = 4; pending ones are not counted yet
        "deliverySuccessRate": 60.0,
        "totalProjects": 1,
        "activeKeys": 2,
        "topProjects": [{"id": str(owner.project.pk), "name": owner.project.name, "sessions": 2}],
    }


def test_stats_count_sessions_this_month_and_in_the_range_asked_for(api_client, owner):
    sessions = [create_session(api_client, owner)["id"] for _ in range(3)]
    month_start = timezone.now().astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    UploadSession.objects.filter(pk=sessions[0]).update(created_at=month_start - timedelta(days=40))
    UploadSession.objects.filter(pk=sessions[1]).update(created_at=month_start - timedelta(seconds=1))
    since = (month_start - timedelta(days=41)).isoformat()
    until = (month_start - timedelta(days=1)).isoformat()

    stats = api_client.get("/api/v1/stats", {"from": since, "to": until}, **owner.auth).json()
    default = api_client.get("/api/v1/stats", **owner.auth).json()

    assert (stats["sessionsThisMonth"], stats["sessionsInRange"], stats["sessionsTotal"]) == (1, 1, 3)
    assert stats["topProjects"][0]["sessions"] == 1
    # the default range is the 30 days before now
    in_last_30_days = UploadSession.objects.filter(created_at__gte=timezone.now() - timedelta(days=30)).count()
    assert default["sessionsInRange"] == in_last_30_days


def test_a_fresh_project_has_zero_success_rate_rather_than_an_error(api_client, owner):
    stats = api_client.get("/api/v1/stats", **owner.auth).json()

    assert stats["deliverySuccessRate"] == 0.0 and isinstance(stats["deliverySuccessRate"], float)
    assert (stats["sessionsTotal"], stats["imagesDelivered"], stats["activeKeys"]) == (0, 0, 1)


def test_a_naive_range_reads_as_utc(api_client, owner):
    session = create_session(api_client, owner)["id"]
    UploadSession.objects.filter(pk=session).update(created_at=datetime(2026, 1, 15, 12, tzinfo=UTC))

    inside = api_client.get("/api/v1/stats?from=2026-01-15T11:00:00&to=2026-01-15T13:00:00", **owner.auth).json()

    assert inside["sessionsInRange"] == 1
