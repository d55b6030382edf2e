"""Documents cost no query per row: a longer answer costs the same number of queries as a short one."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects.models import ApiKey
from tests.factories import image_bytes
from tests.sessions_app.helpers import create_session, upload, webhook_destination


def queries_for(api_client, persona, url: str) -> int:
    # Authentication records lastUsedAt at most once a minute: keep that one write out of the comparison.
    ApiKey.objects.filter(pk=persona.api_key.pk).update(last_used_at=timezone.now())
    with CaptureQueriesContext(connection) as captured:
        response = api_client.get(url, **persona.auth)
    assert response.status_code == 200, response.content
    return len(captured)


def session_with_images(api_client, persona, destinations, images: int) -> str:
    session = create_session(
        api_client, persona, long_polling=False, destination_ids=[str(destination.pk) for destination in destinations]
    )
    for _ in range(images):
        assert upload(api_client, session["id"], image_bytes()).status_code == 201
    return session["id"]


def test_delivery_status_costs_the_same_queries_for_one_image_or_many(api_client, owner):
    destinations = [webhook_destination(owner, "a"), webhook_destination(owner, "b")]
    small = session_with_images(api_client, owner, destinations[:1], images=1)
    large = session_with_images(api_client, owner, destinations, images=6)

    one = queries_for(api_client, owner, f"/api/v1/upload-sessions/{small}/delivery-status")
    many = queries_for(api_client, owner, f"/api/v1/upload-sessions/{large}/delivery-status")

    assert many == one


def test_the_destination_list_costs_the_same_queries_for_one_destination_or_many(api_client, owner):
    url = f"/api/v1/projects/{owner.project.pk}/destinations"
    webhook_destination(owner, "first")
    one = queries_for(api_client, owner, url)
    for index in range(5):
        webhook_destination(owner, f"more {index}")

    assert queries_for(api_client, owner, url) == one
