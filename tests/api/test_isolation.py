"""A key sees only its own project (docs/api.md "Errors", "Authentication"): another project's ids are 404, never
403, never data."""

from dataclasses import dataclass

import pytest

from delivery.models import Delivery
from destinations.models import Destination
from sessions_app.models import Image, UploadSession
from tests.factories import Persona, image_bytes
from tests.sessions_app.helpers import create_session, upload, webhook_destination

SECRET_NAME = "Owner's confidential hook"


@dataclass
class OwnerWorld:
    """What the owner has: a destination, a long-polling session using it, an image and its failed delivery."""

    persona: Persona
    destination: Destination
    session_id: str
    image_id: str
    delivery: Delivery

    def fill(self, template: str) -> str:
        return template.format(
            project=self.persona.project.pk,
            destination=self.destination.pk,
            session=self.session_id,
            delivery=self.delivery.pk,
            image=self.image_id,
        )


@pytest.fixture
def world(api_client, owner) -> OwnerWorld:
    destination = webhook_destination(owner, name=SECRET_NAME)
    session = create_session(api_client, owner, destination_ids=[str(destination.pk)], long_polling=True)
    image_id = upload(api_client, session["id"], image_bytes()).json()["id"]
    delivery = Delivery.objects.get(image_id=image_id)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error="HTTP 503")
    return OwnerWorld(owner, destination, session["id"], image_id, delivery)


REQUESTS = [
    ("patch", "/api/v1/upload-sessions/{session}", {"max_images": 50, "password": "hijacked"}),
    ("get", "/api/v1/upload-sessions/{session}/delivery-status", None),
    ("post", "/api/v1/upload-sessions/{session}/deliveries/{delivery}/retry", None),
    ("get", "/api/v1/upload-sessions/{session}/poll", None),
    ("get", "/api/v1/upload-sessions/{session}/images/{image}", None),
    ("post", "/api/v1/upload-sessions/{session}/images/{image}/ack", None),
    ("get", "/api/v1/sessions/{session}/poll?timeout=1", None),
    ("get", "/api/v1/images/{image}/download", None),
    ("post", "/api/v1/images/{image}/ack", None),
    ("get", "/api/v1/projects/{project}/destinations", None),
    ("post", "/api/v1/projects/{project}/destinations", {"type": "webhook", "name": "x", "config": {}}),
    ("patch", "/api/v1/projects/{project}/destinations/{destination}", {"name": "renamed", "isActive": False}),
    ("delete", "/api/v1/projects/{project}/destinations/{destination}", None),
    ("post", "/api/v1/projects/{project}/destinations/{destination}/test", None),
    ("get", "/api/v1/projects/{project}/keys", None),
    ("post", "/api/v1/projects/{project}/keys", {"label": "intruder"}),
]


def send(api_client, persona: Persona, method: str, path: str, body):
    if body is None:
        return getattr(api_client, method)(path, **persona.auth)
    return getattr(api_client, method)(path, body, format="json", **persona.auth)


@pytest.mark.parametrize(("method", "template", "body"), REQUESTS, ids=[f"{m} {t}" for m, t, _ in REQUESTS])
def test_outsider_gets_404_for_another_projects_resources_and_changes_nothing(
    api_client, world, outsider, method, template, body
):
    response = send(api_client, outsider, method, world.fill(template), body)

    assert response.status_code == 404, response.content
    assert response.json()["code"] == "NOT_FOUND"
    for private in (SECRET_NAME, world.image_id, str(world.destination.pk), "127.0.0.1:9"):
        assert private not in response.content.decode()
    session = UploadSession.objects.get(pk=world.session_id)
    assert (session.max_images, session.password_hash) == (10, "")
    destination = Destination.objects.get(pk=world.destination.pk)
    assert (destination.name, destination.is_active, destination.deleted_at) == (SECRET_NAME, True, None)
    assert Destination.objects.filter(project=world.persona.project).count() == 1
    assert Delivery.objects.get(pk=world.delivery.pk).status == Delivery.Status.FAILED
    image = Image.objects.get(pk=world.image_id)
    assert (image.acknowledged_at, image.poll_leased_until) == (None, None)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("patch", "", {"name": "renamed"}), ("delete", "", None), ("post", "/test", None)],
)
def test_outsider_cannot_reach_a_foreign_destination_through_its_own_project(
    api_client, world, outsider, method, suffix, body
):
    path = f"/api/v1/projects/{outsider.project.pk}/destinations/{world.destination.pk}{suffix}"

    response = send(api_client, outsider, method, path, body)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), response.content
    destination = Destination.objects.get(pk=world.destination.pk)
    assert (destination.name, destination.deleted_at) == (SECRET_NAME, None)


def test_outsider_cannot_retry_a_foreign_delivery_through_its_own_session(api_client, world, outsider):
    own_session = create_session(api_client, outsider)

    response = api_client.post(
        f"/api/v1/upload-sessions/{own_session['id']}/deliveries/{world.delivery.pk}/retry", **outsider.auth
    )

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")
    assert Delivery.objects.get(pk=world.delivery.pk).status == Delivery.Status.FAILED


def test_outsider_cannot_use_a_foreign_destination_for_a_session(api_client, world, outsider):
    response = api_client.post(
        "/api/v1/upload-sessions", {"destination_ids": [str(world.destination.pk)]}, format="json", **outsider.auth
    )

    assert response.status_code == 400, response.content
    assert (response.json()["code"], list(response.json()["fields"])) == ("VALIDATION_ERROR", ["destination_ids"])
    assert str(world.destination.pk) in response.json()["fields"]["destination_ids"][0]
    assert SECRET_NAME not in response.content.decode()


def test_outsiders_own_destination_list_does_not_include_foreign_ones(api_client, world, outsider):
    webhook_destination(outsider, name="mine")

    response = api_client.get(f"/api/v1/projects/{outsider.project.pk}/destinations", **outsider.auth)

    assert [destination["name"] for destination in response.json()] == ["mine"]


def test_the_owner_reaches_the_same_resources(api_client, world):
    owner = world.persona

    assert (
        send(api_client, owner, "get", world.fill("/api/v1/upload-sessions/{session}/delivery-status"), None).json()[
            "images"
        ][0]["image_id"]
        == world.image_id
    )
    listed = send(api_client, owner, "get", world.fill("/api/v1/projects/{project}/destinations"), None)
    assert [destination["name"] for destination in listed.json()] == [SECRET_NAME]
    retried = send(
        api_client, owner, "post", world.fill("/api/v1/upload-sessions/{session}/deliveries/{delivery}/retry"), None
    )
    assert retried.status_code == 200, retried.content
    assert retried.json()["status"] == "pending"
    patched = send(api_client, owner, "patch", world.fill("/api/v1/upload-sessions/{session}"), {"max_images": 50})
    assert patched.json()["effectiveMaxImages"] == 50
    deleted = send(
        api_client, owner, "delete", world.fill("/api/v1/projects/{project}/destinations/{destination}"), None
    )
    assert deleted.status_code == 204
