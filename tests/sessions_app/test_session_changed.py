"""Every change of a session's facts passes through `session_changed` exactly once, and is published only after
its transaction commits."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apertur import events
from delivery.models import Delivery
from delivery.services import delivery_execute, delivery_retry
from destinations.services import destination_delete
from sessions_app.models import UploadSession
from sessions_app.services import sessions_expire_due
from sessions_app.status import SessionEvent
from tests.destinations.helpers import FixedAnswerServer, create_destination, create_session, upload_image
from tests.factories import image_bytes


@pytest.fixture
def published(transactional_db):
    """What was published, in order. Real commits (transactional_db): publication waits for them."""
    heard: list[events.Event] = []
    unsubscribe = events.subscribe(heard.append)
    yield heard
    unsubscribe()


@pytest.fixture
def receiver():
    server = FixedAnswerServer(503)
    yield server
    server.stop()


def names(heard: list[events.Event]) -> list[str]:
    return [event.name for event in heard]


def a_session_with_one_image(api_client, owner, receiver, **session_body) -> tuple[dict, dict]:
    destination = create_destination(api_client, owner, "webhook", {"url": receiver.url, "secret": "secret-123"})
    session = create_session(api_client, owner, [destination["id"]], **session_body)
    return session, upload_image(api_client, session["id"], image_bytes())


def test_a_created_session_and_an_accepted_image_are_one_event_each_and_bump_last_changed(
    api_client, owner, receiver, published
):
    session, image = a_session_with_one_image(api_client, owner, receiver)

    [created, event] = published
    assert (created.name, created.session_id, created.data) == (
        SessionEvent.SESSION_CREATED,
        session["id"],
        {"status": "pending", "ended": False},
    )
    assert event.name == SessionEvent.IMAGE_ACCEPTED
    assert event.session_id == session["id"]
    assert event.data == {
        "image_id": image["id"],
        "index": 0,
        "filename": "photo.jpg",
        "size_bytes": image["size_bytes"],
        "mime_type": "image/jpeg",
        "status": "uploading",
        "ended": False,
    }
    assert UploadSession.objects.get(pk=session["id"]).last_changed_at == event.changed_at


def test_an_accepted_image_is_published_before_its_deliveries_start(
    api_client, owner, receiver, published, monkeypatch
):
    # A worker that picked up the delivery at once would otherwise publish its attempt before the image.
    monkeypatch.setattr(
        "delivery.services._enqueue", lambda delivery_id, **options: published.append(f"sent {delivery_id}")
    )
    _, image = a_session_with_one_image(api_client, owner, receiver)

    [_created, accepted, sent] = published
    assert accepted.name == SessionEvent.IMAGE_ACCEPTED
    assert sent == f"sent {Delivery.objects.get(image_id=image['id']).pk}"


def test_an_attempt_is_one_started_and_one_failed_event(api_client, owner, receiver, published):
    _, image = a_session_with_one_image(api_client, owner, receiver)
    published.clear()
    delivery = Delivery.objects.get(image_id=image["id"])

    delivery_execute(delivery_id=str(delivery.pk))

    assert names(published) == [SessionEvent.DELIVERY_STARTED, SessionEvent.DELIVERY_FAILED]
    assert published[0].data["attempt"] == 1
    assert published[1].data["final"] is False
    assert published[1].data["error"] == "HTTP 503 from the webhook"


def test_a_delivered_image_is_one_delivered_event_and_a_completed_session_says_so(api_client, owner, published):
    ok = FixedAnswerServer(200)
    try:
        _, image = a_session_with_one_image(api_client, owner, ok, max_images=1)
        published.clear()
        delivery_execute(delivery_id=str(Delivery.objects.get(image_id=image["id"]).pk))
    finally:
        ok.stop()

    assert names(published) == [SessionEvent.DELIVERY_STARTED, SessionEvent.DELIVERY_DELIVERED]
    assert published[1].data["destination_type"] == "webhook"
    assert published[1].data["status"] == "completed"  # full, and every delivery done
    assert [event.data["ended"] for event in published] == [False, True]  # the end is told once, when it happens


def test_completing_is_one_closed_event_and_completing_again_is_none(api_client, owner, receiver, published):
    session, _ = a_session_with_one_image(api_client, owner, receiver)
    published.clear()

    for _ in range(2):
        assert api_client.post(f"/api/v1/upload/{session['id']}/complete").status_code == 200

    [event] = published
    assert (event.name, event.data["reason"]) == (SessionEvent.SESSION_CLOSED, "completed")


def test_expiry_is_one_closed_event(api_client, owner, receiver, published):
    session, _ = a_session_with_one_image(api_client, owner, receiver)
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    published.clear()

    assert sessions_expire_due() == 1

    [event] = published
    assert (event.name, event.data["reason"], event.data["status"]) == (
        SessionEvent.SESSION_CLOSED,
        "expired",
        "expired",
    )


def test_a_password_change_is_one_updated_event_naming_the_fields(api_client, owner, receiver, published):
    session, _ = a_session_with_one_image(api_client, owner, receiver)
    published.clear()

    response = api_client.patch(
        f"/api/v1/upload-sessions/{session['id']}",
        {"password": "new-pass", "max_images": 7},
        format="json",
        **owner.auth,
    )

    assert response.status_code == 200
    [event] = published
    assert event.name == SessionEvent.SESSION_UPDATED
    assert event.data["fields"] == ["max_images", "password"]


def test_a_manual_retry_and_a_deleted_destination_are_one_event_each(api_client, owner, receiver, published, settings):
    settings.APERTUR_RETRY_DELAYS = []  # the first failure is final
    _, image = a_session_with_one_image(api_client, owner, receiver)
    delivery = Delivery.objects.get(image_id=image["id"])
    delivery_execute(delivery_id=str(delivery.pk))
    published.clear()

    delivery_retry(delivery=delivery)
    assert names(published) == [SessionEvent.DELIVERY_RETRIED]

    published.clear()
    destination_delete(destination=delivery.destination)
    [event] = published
    assert (event.name, event.data["final"], event.data["error"]) == (
        SessionEvent.DELIVERY_FAILED,
        True,
        "destination deleted",
    )


def test_nothing_is_published_for_a_change_that_rolls_back(api_client, owner, receiver, published):
    _, image = a_session_with_one_image(api_client, owner, receiver)
    delivery = Delivery.objects.get(image_id=image["id"])
    published.clear()

    with pytest.raises(RuntimeError), transaction.atomic():
        destination_delete(destination=delivery.destination)  # would fail the pending delivery: one event
        raise RuntimeError("rolled back")

    assert published == []
    delivery.refresh_from_db()
    assert delivery.status == "pending"


def ended_flags(published) -> list[tuple[str, bool]]:
    return [(event.name, event.data["ended"]) for event in published]


def test_the_upload_that_fills_a_pull_only_session_ends_it(api_client, owner, published):
    """Nothing to deliver: the image that fills the session is its end (docs/api.md "Live events")."""
    response = api_client.post(
        "/api/v1/upload-sessions", {"long_polling": True, "max_images": 1}, format="json", **owner.auth
    )
    session_id = response.json()["id"]
    upload_image(api_client, session_id, image_bytes())
    assert ended_flags(published) == [(SessionEvent.SESSION_CREATED, False), (SessionEvent.IMAGE_ACCEPTED, True)]
    assert UploadSession.objects.get(pk=session_id).ended_at is not None


def test_an_expired_session_ends_only_when_its_last_delivery_finishes(api_client, owner, receiver, published):
    session, image = a_session_with_one_image(api_client, owner, receiver)
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    sessions_expire_due()
    delivery = Delivery.objects.get(image_id=image["id"])
    delivery_execute(delivery_id=str(delivery.pk))  # the receiver answers 503: retried later, still open
    assert UploadSession.objects.get(pk=session["id"]).ended_at is None
    assert not any(ended for _, ended in ended_flags(published))

    ok = FixedAnswerServer(200)
    try:
        patched = api_client.patch(
            f"/api/v1/projects/{owner.project.pk}/destinations/{delivery.destination_id}",
            {"config": {"url": ok.url}},
            format="json",
            **owner.auth,
        )
        assert patched.status_code == 200, patched.content
        Delivery.objects.filter(pk=delivery.pk).update(next_retry_at=timezone.now())
        delivery_execute(delivery_id=str(delivery.pk))
    finally:
        ok.stop()
    assert ended_flags(published)[-1] == (SessionEvent.DELIVERY_DELIVERED, True)
    assert UploadSession.objects.get(pk=session["id"]).status == "expired"


def test_a_settings_change_or_an_ack_on_an_ended_session_does_not_end_it_again(api_client, owner, published):
    response = api_client.post("/api/v1/upload-sessions", {"long_polling": True}, format="json", **owner.auth)
    session_id = response.json()["id"]
    image = upload_image(api_client, session_id, image_bytes())
    assert api_client.post(f"/api/v1/upload/{session_id}/complete").status_code == 200
    patched = api_client.patch(f"/api/v1/upload-sessions/{session_id}", {"max_images": 5}, format="json", **owner.auth)
    assert patched.status_code in (200, 409), patched.content
    acked = api_client.post(f"/api/v1/upload-sessions/{session_id}/images/{image['id']}/ack", **owner.auth)
    assert acked.status_code == 200
    assert [ended for _, ended in ended_flags(published)].count(True) == 1
