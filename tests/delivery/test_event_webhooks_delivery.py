"""Sending project events (docs/api.md "Event webhooks"): signed as the official client verifies, through the real
worker and a real receiver, retried on each webhook's own schedule, in order per session, switched off after too
many failures, and kept in the database until sent."""

import json
import threading
from datetime import timedelta

import pytest
from apertur_sdk.signature import verify_event_signature, verify_svix_signature
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apertur import http as outbound
from delivery.event_webhooks import event_delivery_execute, event_webhook_create, event_webhook_delete
from delivery.models import EventDelivery, EventLog, EventWebhook
from delivery.project_events import project_event_record
from delivery.services import deliveries_sweep
from tests.destinations.helpers import FixedAnswerServer, create_destination, upload_image
from tests.factories import image_bytes, make_persona, wait_until
from tests.servers.webhook_receiver import ReceivedRequest, WebhookReceiver
from tests.sessions_app.helpers import create_session

BODY_KEYS = {"event", "project_id", "data", "timestamp"}


class Answers:
    """What the event receiver answers, in order (then `then`), and which requests it accepted."""

    def __init__(self, receiver: WebhookReceiver, *statuses: int, then: int = 200) -> None:
        self.statuses, self.then = list(statuses), then
        self.accepted: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        receiver.respond = self

    def __call__(self, request: ReceivedRequest) -> int:
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else self.then
            if 200 <= status < 300:
                self.accepted.append(request)
            return status


@pytest.fixture
def event_receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def create_webhook(api_client, persona, **body) -> dict:
    body.setdefault("topics", ["*"])
    response = api_client.post(f"/api/v1/projects/{persona.project.pk}/webhooks", body, format="json", **persona.auth)
    assert response.status_code == 201, response.content
    return response.json()


def body_of(request: ReceivedRequest) -> dict:
    return json.loads(request.body)


@pytest.mark.parametrize("method", ["hmac_sha256", "svix"])
def test_events_are_signed_as_the_official_client_verifies_them(api_client, worker, event_receiver, method):
    persona = make_persona("signed")
    Answers(event_receiver)
    webhook = create_webhook(
        api_client,
        persona,
        url=f"{event_receiver.url}/events",
        topics=["project.session.created"],
        signatureMethod=method,
        customHeaders={"X-Tenant": "acme"},
    )

    session = create_session(api_client, persona)

    [request] = event_receiver.wait_for_requests(1)
    body, secret = request.body.decode(), webhook["secret"]
    assert request.path == "/events" and request.header("Content-Type") == "application/json"
    assert request.header("X-Tenant") == "acme"
    document = body_of(request)
    assert set(document) == BODY_KEYS
    assert (document["event"], document["project_id"]) == ("project.session.created", str(persona.project.pk))
    assert document["data"]["session_id"] == session["id"]
    delivery = EventDelivery.objects.get()
    assert request.header("X-Apertur-Delivery-Id") == str(delivery.pk)
    if method == "svix":
        headers = (request.header("svix-id"), request.header("svix-timestamp"), request.header("svix-signature"))
        assert headers[0] == str(delivery.pk)
        assert verify_svix_signature(body, *headers, secret)
        assert not verify_svix_signature(body.replace("created", "expired"), *headers, secret)
        assert request.header("X-Apertur-Signature") is None
    else:
        timestamp, signature = request.header("X-Apertur-Timestamp"), request.header("X-Apertur-Signature")
        assert signature.startswith("sha256=")
        assert verify_event_signature(body, timestamp, signature, secret)
        assert not verify_event_signature(body, str(int(timestamp) + 1), signature, secret)
        assert request.header("svix-signature") is None
    wait_until(lambda: EventDelivery.objects.get().status == "sent")
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.response_code, delivery.response_body) == (1, 200, "ok")


def test_a_receiver_down_for_two_attempts_then_back_gets_every_event_once_in_order_per_session(
    api_client, worker, webhook_receiver, event_receiver
):
    persona = make_persona("flaky")
    answers = Answers(event_receiver, 503, 503)
    webhook = create_webhook(api_client, persona, url=f"{event_receiver.url}/events", retryIntervals=[1])
    destination = create_destination(
        api_client, persona, "webhook", {"url": f"{webhook_receiver.url}/images", "secret": "image-secret"}
    )

    session = create_session(api_client, persona, long_polling=False, destination_ids=[destination["id"]])
    for _ in range(2):
        upload_image(api_client, session["id"], image_bytes())
    assert api_client.post(f"/api/v1/upload/{session['id']}/complete").status_code == 200

    wait_until(lambda: EventLog.objects.filter(topic="project.session.completed").exists(), timeout=30)
    wait_until(lambda: not EventDelivery.objects.exclude(status="sent").exists(), timeout=30)
    events = list(EventLog.objects.order_by("created_at"))
    topics = [event.topic for event in events]
    assert (topics[0], topics[-1]) == ("project.session.created", "project.session.completed")
    assert sorted(topics[1:-1]) == ["project.upload.completed"] * 2 + ["project.upload.started"] * 2
    for image_id in {event.data["image_id"] for event in events[1:-1]}:  # each image: started, then completed
        assert [event.topic for event in events if event.data.get("image_id") == image_id] == [
            "project.upload.started",
            "project.upload.completed",
        ]
    received_ids = [request.header("X-Apertur-Event-Id") for request in answers.accepted]
    assert received_ids == [str(event.pk) for event in events]  # each once, in the order they happened
    assert len(event_receiver.requests) == len(events) + 2  # the two refused attempts, then one each
    first = EventDelivery.objects.get(event=events[0])
    assert (first.attempts, first.response_code, first.last_error) == (3, 200, "")
    assert EventWebhook.objects.get(pk=webhook["id"]).consecutive_failures == 0  # reset by the first success
    for request in answers.accepted:
        assert verify_event_signature(
            request.body.decode(),
            request.header("X-Apertur-Timestamp"),
            request.header("X-Apertur-Signature"),
            webhook["secret"],
        )
        assert body_of(request)["data"]["session_id"] == session["id"]


def test_reaching_disable_after_failures_switches_the_webhook_off(api_client, worker, event_receiver):
    persona = make_persona("failing")
    Answers(event_receiver, then=500)
    webhook = create_webhook(
        api_client,
        persona,
        url=f"{event_receiver.url}/events",
        maxRetries=5,
        retryIntervals=[1],
        disableAfterFailures=2,
    )

    create_session(api_client, persona)

    wait_until(lambda: not EventWebhook.objects.get(pk=webhook["id"]).is_active)
    wait_until(lambda: EventDelivery.objects.get().status == "failed")
    shown = api_client.get(f"/api/v1/projects/{persona.project.pk}/webhooks", **persona.auth).json()[0]
    assert (shown["isActive"], shown["consecutiveFailures"]) == (False, 2) and shown["disabledAt"] is not None
    deliveries = api_client.get(
        f"/api/v1/projects/{persona.project.pk}/webhooks/{webhook['id']}/deliveries", **persona.auth
    ).json()
    [row] = deliveries["deliveries"]
    assert (row["status"], row["attempts"], row["responseCode"], row["responseBody"]) == ("failed", 2, 500, "ok")
    assert row["lastError"] == "HTTP 500 from the webhook" and row["nextRetryAt"] is None
    assert len(event_receiver.requests) == 2

    create_session(api_client, persona)
    assert EventLog.objects.count() == 1  # a switched-off webhook gets nothing new


def test_a_manual_retry_sends_a_failed_delivery_again_with_a_fresh_budget(api_client, worker, event_receiver):
    persona = make_persona("retried")
    answers = Answers(event_receiver, then=500)
    webhook = create_webhook(api_client, persona, url=f"{event_receiver.url}/events", maxRetries=0)
    create_session(api_client, persona)
    wait_until(lambda: EventDelivery.objects.get().status == "failed")
    delivery = EventDelivery.objects.get()
    assert (delivery.attempts, EventWebhook.objects.get().consecutive_failures) == (1, 1)

    answers.then = 200
    response = api_client.post(
        f"/api/v1/projects/{persona.project.pk}/webhooks/{webhook['id']}/deliveries/{delivery.pk}/retry",
        **persona.auth,
    )

    assert response.status_code == 200 and "message" in response.json()
    wait_until(lambda: EventDelivery.objects.get().status == "sent")
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.response_code, delivery.last_error) == (1, 200, "")
    assert EventWebhook.objects.get().consecutive_failures == 0
    assert [request.header("X-Apertur-Delivery-Id") for request in answers.accepted] == [str(delivery.pk)]


def test_the_test_endpoint_sends_one_signed_event_now_and_says_how_it_went(api_client, owner, event_receiver, settings):
    answers = Answers(event_receiver, 200, 500)
    webhook = create_webhook(api_client, owner, url=f"{event_receiver.url}/events")
    test_url = f"/api/v1/projects/{owner.project.pk}/webhooks/{webhook['id']}/test"

    delivered = api_client.post(test_url, **owner.auth)
    refused = api_client.post(test_url, **owner.auth)
    settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = []
    outbound._allowed_private_networks.cache_clear()
    blocked = api_client.post(test_url, **owner.auth)

    assert delivered.status_code == 200 and delivered.json() == {"message": "Test event delivered: HTTP 200."}
    assert refused.json() == {"message": "Test event not delivered: HTTP 500 from the webhook."}
    assert blocked.status_code == 200 and "refused host" in blocked.json()["message"]
    assert len(event_receiver.requests) == 2  # the refused host was never connected to
    [request] = answers.accepted
    document = body_of(request)
    assert (document["event"], document["data"]["webhook_id"]) == ("project.webhook.test", webhook["id"])
    assert verify_event_signature(
        request.body.decode(),
        request.header("X-Apertur-Timestamp"),
        request.header("X-Apertur-Signature"),
        webhook["secret"],
    )
    assert not EventLog.objects.exists() and not EventDelivery.objects.exists()
    assert EventWebhook.objects.get().consecutive_failures == 0


def test_a_running_attempt_is_left_alone_until_its_lease_runs_out(api_client, owner, event_receiver):
    Answers(event_receiver)
    create_webhook(api_client, owner, url=f"{event_receiver.url}/events", maxRetries=1)
    create_session(api_client, owner)
    delivery = EventDelivery.objects.get()
    running = {"attempts": 1, "next_retry_at": None, "lease_expires_at": timezone.now() + timedelta(minutes=1)}
    EventDelivery.objects.filter(pk=delivery.pk).update(**running)

    event_delivery_execute(delivery_id=str(delivery.pk))
    assert event_receiver.requests == []

    EventDelivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    event_delivery_execute(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert len(event_receiver.requests) == 1
    assert (delivery.status, delivery.attempts) == ("sent", 2)


def test_a_worker_lost_during_the_last_attempt_fails_the_delivery_without_calling_again(
    api_client, owner, event_receiver
):
    create_webhook(api_client, owner, url=f"{event_receiver.url}/events", maxRetries=1)
    create_session(api_client, owner)
    lost = {"attempts": 2, "next_retry_at": None, "lease_expires_at": timezone.now() - timedelta(seconds=1)}
    EventDelivery.objects.update(**lost)

    event_delivery_execute(delivery_id=str(EventDelivery.objects.get().pk))

    delivery = EventDelivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("failed", "the worker stopped during the last attempt")
    assert event_receiver.requests == []


def test_the_sweeper_rings_again_for_due_event_deliveries_whose_doorbell_was_lost(api_client, owner):
    create_webhook(api_client, owner, url="http://127.0.0.1:9/events")
    create_session(api_client, owner)  # in this test's transaction: its doorbell never rings
    long_ago = timezone.now() - timedelta(hours=1)
    EventDelivery.objects.update(enqueued_at=long_ago, next_retry_at=long_ago)

    assert deliveries_sweep() == 1
    assert EventDelivery.objects.get().enqueued_at > long_ago
    assert deliveries_sweep() == 0  # rung recently: left alone for APERTUR_SWEEP_RESEND_AFTER_SECONDS


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SQLite runs one write transaction at a time")
def test_a_webhook_deleted_while_an_event_for_it_is_being_recorded_waits_and_the_change_still_commits(
    transactional_db,
):
    persona = make_persona("racing")
    webhook, _ = event_webhook_create(project=persona.project, url="http://127.0.0.1:9/events", topics=["*"])
    recorded, release, failures = threading.Event(), threading.Event(), []

    def record() -> None:
        try:
            with transaction.atomic():
                project_event_record(project_id=persona.project.pk, topic="project.session.created", data={})
                recorded.set()
                release.wait(10)
        except Exception as error:  # the commit's foreign-key check would fail here without the lock
            failures.append(error)
        finally:
            connection.close()

    def delete() -> None:
        event_webhook_delete(webhook=webhook)
        connection.close()

    recording = threading.Thread(target=record)
    recording.start()
    assert recorded.wait(10)
    deleting = threading.Thread(target=delete)
    deleting.start()
    deleting.join(0.5)
    assert deleting.is_alive()  # the delete waits for the transaction that is recording an event for it

    release.set()
    recording.join(10)
    deleting.join(10)

    assert failures == []
    assert EventLog.objects.count() == 1
    assert not EventWebhook.objects.exists() and not EventDelivery.objects.exists()


# --- found by the review of the event webhooks -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "final"), [(200, "sent"), (500, "failed")])
def test_a_receiver_answering_a_nul_character_gets_the_event_once_and_its_answer_is_kept(
    api_client, owner, status, final
):
    """PostgreSQL refuses NUL in text: the outcome's write failed, the lease ran out and the event went again."""
    receiver = FixedAnswerServer(status, body=b"ok\x00then")
    try:
        create_webhook(api_client, owner, url=f"{receiver.url}/events", maxRetries=0)
        create_session(api_client, owner)

        event_delivery_execute(delivery_id=str(EventDelivery.objects.get().pk))

        delivery = EventDelivery.objects.get()
        assert (delivery.status, delivery.attempts, len(receiver.requests)) == (final, 1, 1)
        assert delivery.response_body == "ok\ufffdthen"
        assert EventWebhook.objects.get().consecutive_failures == (1 if status == 500 else 0)
    finally:
        receiver.stop()


def test_a_webhook_runs_at_most_its_number_of_attempts_at_once_and_the_rest_wait_their_turn(
    api_client, owner, event_receiver, settings, monkeypatch
):
    from delivery import event_webhooks

    settings.APERTUR_EVENT_WEBHOOK_CONCURRENCY = 1
    rung = []
    monkeypatch.setattr(event_webhooks, "event_delivery_enqueue", lambda i, **kw: rung.append((i, kw)))
    create_webhook(api_client, owner, url=f"{event_receiver.url}/events")
    create_session(api_client, owner)
    create_session(api_client, owner)
    running, waiting = EventDelivery.objects.order_by("created_at")
    EventDelivery.objects.filter(pk=running.pk).update(
        attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=1)
    )

    with transaction.atomic():
        event_delivery_execute(delivery_id=str(waiting.pk))

    waiting.refresh_from_db()
    assert event_receiver.requests == []
    assert waiting.attempts == 0 and waiting.next_retry_at > timezone.now()


def test_a_projects_webhooks_together_run_at_most_its_number_of_attempts_at_once(
    api_client, owner, event_receiver, settings
):
    settings.APERTUR_EVENT_PROJECT_CONCURRENCY = 1
    create_webhook(api_client, owner, url=f"{event_receiver.url}/first")
    create_webhook(api_client, owner, url=f"{event_receiver.url}/second")
    create_session(api_client, owner)
    first, second = EventDelivery.objects.order_by("webhook__url")
    in_flight = {"attempts": 1, "lease_expires_at": timezone.now() + timedelta(minutes=1)}
    EventDelivery.objects.filter(pk=first.pk).update(**in_flight)

    event_delivery_execute(delivery_id=str(second.pk))

    second.refresh_from_db()
    assert event_receiver.requests == [] and second.attempts == 0
    other = make_persona("other-project")
    create_webhook(api_client, other, url=f"{event_receiver.url}/other")
    create_session(api_client, other)
    event_delivery_execute(delivery_id=str(EventDelivery.objects.get(webhook__project=other.project).pk))
    assert len(event_receiver.requests) == 1  # another project is not held up


def test_events_waiting_behind_an_earlier_one_are_parked_not_rung_by_every_sweep(
    owner, event_receiver, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from delivery import event_webhooks

    settings.APERTUR_SWEEP_RESEND_AFTER_SECONDS = 0  # every sweep counts as a minute later
    rung = []
    monkeypatch.setattr(event_webhooks, "event_delivery_enqueue", lambda i, **kw: rung.append(i))
    event_webhook_create(project=owner.project, url=f"{event_receiver.url}/events", topics=["*"])
    for number in range(3):
        project_event_record(
            project_id=owner.project.pk,
            topic="project.upload.started",
            data={"n": number},
            ordering_key="sess_ONE",
            created_at=timezone.now() + timedelta(microseconds=number),
        )
    head, *later = EventDelivery.objects.order_by("created_at")
    EventDelivery.objects.filter(pk=head.pk).update(attempts=1, next_retry_at=timezone.now() + timedelta(hours=1))
    for delivery in later:
        event_delivery_execute(delivery_id=str(delivery.pk))  # each finds the head before it, and is parked

    assert deliveries_sweep() == 0  # the head waits an hour; the later ones wait for it, not for the sweeper

    EventDelivery.objects.filter(pk=head.pk).update(next_retry_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        event_delivery_execute(delivery_id=str(head.pk))
    assert rung[-1] == str(later[0].pk)
    event_delivery_execute(delivery_id=str(later[0].pk))
    assert [body_of(request)["data"]["n"] for request in event_receiver.requests] == [0, 1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serves one machine: one clock")
def test_a_sessions_events_are_stamped_by_the_database_clock_not_the_machine_making_them(owner, monkeypatch):
    """A worker whose clock runs behind the web process's must not put a session's later event first."""
    from django.utils import timezone as django_timezone

    from delivery.project_events import session_project_events

    session = create_session_row(owner)  # before the webhook: its own creation is not an event for it
    event_webhook_create(project=owner.project, url="http://127.0.0.1:9/events", topics=["*"])
    behind = django_timezone.now() - timedelta(hours=1)
    monkeypatch.setattr(django_timezone, "now", lambda: behind)

    session_project_events(session=session, event="session.created", data={}, status="uploading", ended=False)

    stamped = EventLog.objects.get().created_at
    assert abs((stamped - (behind + timedelta(hours=1))).total_seconds()) < 60


def create_session_row(persona):
    from sessions_app.services import session_create

    return session_create(api_key=persona.api_key, long_polling=True)


def test_events_past_their_retention_are_forgotten_once_every_delivery_is_final(owner, settings):
    from delivery.event_webhooks import event_log_purge

    settings.APERTUR_EVENT_LOG_RETENTION_DAYS = 30
    event_webhook_create(project=owner.project, url="http://127.0.0.1:9/events", topics=["*"])
    long_ago = timezone.now() - timedelta(days=31)
    for number, status in enumerate(["sent", "failed", "retrying"]):
        event = project_event_record(
            project_id=owner.project.pk, topic="project.upload.started", data={"n": number}, created_at=long_ago
        )
        EventDelivery.objects.filter(event=event).update(status=status, updated_at=long_ago)
    project_event_record(project_id=owner.project.pk, topic="project.upload.started", data={"n": "recent"})
    EventDelivery.objects.filter(event__data__n="recent").update(status="sent")
    # Old, but its delivery was retried by hand and ended only now: kept for the retention from then.
    event = project_event_record(
        project_id=owner.project.pk, topic="project.upload.started", data={"n": "retried"}, created_at=long_ago
    )
    EventDelivery.objects.filter(event=event).update(status="sent")

    assert event_log_purge() == 2

    assert sorted(str(event.data["n"]) for event in EventLog.objects.all()) == ["2", "recent", "retried"]
    assert EventDelivery.objects.count() == 3


def test_a_manual_retry_of_an_old_delivery_keeps_its_event_from_the_purge(api_client, owner, settings):
    from delivery.event_webhooks import event_delivery_retry, event_log_purge

    event_webhook_create(project=owner.project, url="http://127.0.0.1:9/events", topics=["*"])
    long_ago = timezone.now() - timedelta(days=31)
    event = project_event_record(
        project_id=owner.project.pk, topic="project.upload.started", data={}, created_at=long_ago
    )
    EventDelivery.objects.filter(event=event).update(status="failed", updated_at=long_ago)

    event_delivery_retry(delivery=EventDelivery.objects.get())

    assert event_log_purge() == 0
    assert EventDelivery.objects.get().status == "retrying"


def test_a_freed_slot_goes_to_the_delivery_that_waited_longest_for_it(
    api_client, owner, event_receiver, settings, monkeypatch
):
    from delivery import event_webhooks

    settings.APERTUR_EVENT_WEBHOOK_CONCURRENCY = 1
    rung = []
    monkeypatch.setattr(event_webhooks, "event_delivery_enqueue", lambda i, **kw: rung.append(i))
    create_webhook(api_client, owner, url=f"{event_receiver.url}/events")
    for _ in range(3):
        create_session(api_client, owner)
    running, waiting, next_one = EventDelivery.objects.order_by("created_at")
    in_flight = {"attempts": 1, "lease_expires_at": timezone.now() + timedelta(minutes=1)}
    EventDelivery.objects.filter(pk=running.pk).update(**in_flight)
    event_delivery_execute(delivery_id=str(waiting.pk))
    waiting.refresh_from_db()
    assert waiting.waiting_for_slot and waiting.next_retry_at > timezone.now() + timedelta(minutes=5)
    assert rung == []  # it waits its turn: no polling doorbell

    EventDelivery.objects.filter(pk=running.pk).update(status="sent", lease_expires_at=None)
    event_delivery_execute(delivery_id=str(next_one.pk))  # runs, and hands its slot on when it ends

    waiting.refresh_from_db()
    assert rung == [str(waiting.pk)]
    assert not waiting.waiting_for_slot and waiting.next_retry_at <= timezone.now()
    event_delivery_execute(delivery_id=str(waiting.pk))
    assert len(event_receiver.requests) == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serves one machine: one clock")
def test_a_worker_whose_clock_runs_ahead_still_sends_the_next_event_of_a_session_at_once(
    owner, event_receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """Due times are set by the clock claims judge them by (the database's): a ring for an event made due by a
    worker's own clock, 2 s ahead, was refused as early and left to the sweeper's safety net."""
    from django.utils import timezone as django_timezone

    from delivery import event_webhooks

    rung = []
    monkeypatch.setattr(event_webhooks, "event_delivery_enqueue", lambda i, **kw: rung.append(i))
    event_webhook_create(project=owner.project, url=f"{event_receiver.url}/events", topics=["*"])
    for number in range(2):
        project_event_record(
            project_id=owner.project.pk, topic="project.upload.started", data={"n": number}, ordering_key="sess_ONE"
        )
    first, second = EventDelivery.objects.order_by("created_at")
    event_delivery_execute(delivery_id=str(second.pk))  # parked behind the first
    real_now = django_timezone.now
    monkeypatch.setattr(django_timezone, "now", lambda: real_now() + timedelta(seconds=2))

    with django_capture_on_commit_callbacks(execute=True):
        event_delivery_execute(delivery_id=str(first.pk))
    event_delivery_execute(delivery_id=rung[-1])

    assert [body_of(request)["data"]["n"] for request in event_receiver.requests] == [0, 1]
