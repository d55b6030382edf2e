"""Event webhooks (docs/api.md "Event webhooks"): their settings, and the sending of project events through the
same outbox, lease and retry machinery as image deliveries, on each webhook's own schedule.

An event delivery is one small JSON POST bounded by a total deadline, so its lease is that deadline plus a lease
period and needs no heartbeat: a worker killed mid-attempt leaves a lease that runs out, and the sweeper has the
delivery attempted again. Attempts are counted before the call; leases are judged by the database's clock.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apertur.api.formats import iso
from apertur.deadlines import Deadline
from apertur.errors import AppError
from apertur.http import HostNotAllowed, outbound_session
from delivery.leases import database_now
from delivery.models import EventDelivery, EventLog, EventWebhook
from projects.models import Project

logger = logging.getLogger(__name__)
Status = EventDelivery.Status
RESPONSE_BODY_LIMIT = 1000  # characters of the receiver's answer kept in `responseBody`
ERROR_TEXT_LIMIT = 2000
# Retries this close ring a delayed doorbell; longer waits are left to the sweeper (as for image deliveries).
BROKER_DELAY_LIMIT_SECONDS = 120
TEST_TOPIC = "project.webhook.test"
PURGE_BATCH = 1000
# What a webhook created without them gets (docs/api.md "Event webhooks"): the image deliveries' schedule.
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_INTERVALS = [5, 30, 120, 600, 3600]
DEFAULT_DISABLE_AFTER_FAILURES = 20


def _new_secret() -> str:
    """32 random bytes as hex: svix signs with the bytes (bytes.fromhex), hmac_sha256 with the text itself."""
    return secrets.token_hex(32)


# --- settings -------------------------------------------------------------------------------------


def event_webhook_create(
    *,
    project: Project,
    url: str,
    topics: list[str],
    signature_method: str = EventWebhook.SignatureMethod.HMAC_SHA256,
    max_retries: int | None = None,
    retry_intervals: list[int] | None = None,
    disable_after_failures: int | None = None,
    custom_headers: dict[str, str] | None = None,
) -> tuple[EventWebhook, str]:
    """A new webhook and its secret, which only this call's caller ever sees. A project has at most
    APERTUR_EVENT_WEBHOOKS_PER_PROJECT: each one multiplies every event of the project."""
    secret = _new_secret()
    with transaction.atomic():
        # The project's row is locked while counting, so concurrent creates cannot pass the cap together. FOR NO
        # KEY UPDATE: rows being inserted into the project (FOR KEY SHARE on it) neither wait for it nor hold it up.
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        limit = settings.APERTUR_EVENT_WEBHOOKS_PER_PROJECT
        if EventWebhook.objects.filter(project=project).count() >= limit:
            said = f"A project has at most {limit} event webhooks; delete one first."
            raise AppError(409, "WEBHOOK_LIMIT_REACHED", said)
        webhook = EventWebhook.objects.create(
            project=project,
            url=url,
            secret=secret,
            signature_method=signature_method,
            topics=topics,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            retry_intervals=retry_intervals or list(DEFAULT_RETRY_INTERVALS),
            disable_after_failures=disable_after_failures or DEFAULT_DISABLE_AFTER_FAILURES,
            custom_headers=custom_headers or {},
        )
    return webhook, secret


def event_webhook_update(*, webhook: EventWebhook, changes: dict[str, Any]) -> EventWebhook:
    """Apply a PATCH (model field names). Switching a webhook on again clears `disabledAt` and the failure count."""
    with transaction.atomic():
        # NO KEY UPDATE: uploads hold the project's webhooks FOR KEY SHARE while recording events; they need not wait.
        webhook = EventWebhook.objects.select_for_update(no_key=True).filter(pk=webhook.pk).first()
        if webhook is None:  # deleted since it was looked up
            raise AppError(404, "NOT_FOUND", "Webhook not found.")
        for field, value in changes.items():
            setattr(webhook, field, value)
        if changes.get("is_active") is True:
            webhook.disabled_at = None
            webhook.consecutive_failures = 0
        elif changes.get("is_active") is False and webhook.disabled_at is None:
            webhook.disabled_at = timezone.now()
        webhook.save()
    return webhook


def event_webhook_delete(*, webhook: EventWebhook) -> None:
    """The webhook and its deliveries go; an attempt in flight finds its row gone and records nothing.

    The row is locked first: that waits for transactions recording an event for it (they hold it FOR KEY SHARE,
    delivery/project_events.py), so the deliveries they wrote are seen, and deleted, with it."""
    with transaction.atomic():
        locked = EventWebhook.objects.select_for_update().filter(pk=webhook.pk).first()
        if locked is not None:
            locked.delete()


# --- the request ----------------------------------------------------------------------------------


def event_body(*, topic: str, project_id: Any, data: dict[str, Any], timestamp: Any) -> bytes:
    """The JSON body (docs/api.md "Event webhooks"); the same bytes on every attempt of one delivery."""
    document = {"event": topic, "project_id": str(project_id), "data": data, "timestamp": iso(timestamp)}
    return json.dumps(document, separators=(",", ":")).encode()


def signature_headers(webhook: EventWebhook, *, message_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """`hmac_sha256`: HMAC(secret, "<ts>.<body>") as hex; `svix`: HMAC(bytes.fromhex(secret), "<id>.<ts>.<body>")
    as base64 (docs/api.md "Event webhooks")."""
    if webhook.signature_method == EventWebhook.SignatureMethod.SVIX:
        digest = hmac.new(bytes.fromhex(webhook.secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
        return {
            "svix-id": message_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": "v1," + base64.b64encode(digest.digest()).decode(),
        }
    digest = hmac.new(webhook.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"X-Apertur-Timestamp": str(timestamp), "X-Apertur-Signature": f"sha256={digest.hexdigest()}"}


@dataclass(frozen=True)
class Outcome:
    response_code: int | None
    response_body: str
    duration_ms: int
    error: str  # empty when the receiver answered 2xx


def _post(webhook: EventWebhook, *, topic: str, message_id: str, body: bytes, extra: dict[str, str]) -> Outcome:
    """One signed POST through the outbound gate, within a total deadline; never raises for the receiver's sake."""
    timestamp = int(time.time())
    headers = {
        **webhook.custom_headers,
        **extra,
        "Content-Type": "application/json",
        "X-Apertur-Event": topic,
        **signature_headers(webhook, message_id=message_id, body=body, timestamp=timestamp),
    }
    started = time.monotonic()
    code, answer, error = None, "", ""
    timeout = settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS
    try:
        with Deadline(timeout) as deadline, outbound_session() as session:
            response = session.post(
                webhook.url,
                data=body,
                headers=headers,
                timeout=deadline.timeout(timeout),
                allow_redirects=False,
                stream=True,  # only the start of the answer is kept: a receiver dripping a long body cannot hold us
            )
            with response:
                code = response.status_code
                answer = next(response.iter_content(RESPONSE_BODY_LIMIT), b"").decode(errors="replace")
    except HostNotAllowed as refused:
        error = f"refused host: {refused}"
    except requests.Timeout:
        error = f"the webhook did not answer within {timeout:g} s"
    except requests.RequestException as failure:
        error = f"could not reach the webhook: {_root_cause(failure)}"
    duration_ms = int((time.monotonic() - started) * 1000)
    if code is not None and not 200 <= code < 300:
        error = f"HTTP {code} from the webhook" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    return Outcome(code, _storable(answer[:RESPONSE_BODY_LIMIT]), duration_ms, _storable(error[:ERROR_TEXT_LIMIT]))


def _storable(text: str) -> str:
    """A receiver's text as a column takes it: PostgreSQL refuses NUL in text, and the failed write would lose the
    attempt's outcome (and, after the lease, send the event again)."""
    return text.replace("\x00", "\ufffd")


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
        if isinstance(error, HostNotAllowed):
            break
    return str(error)


def event_webhook_test(*, webhook: EventWebhook) -> str:
    """Send one signed `project.webhook.test` event now, once, no retries and no record; say what happened."""
    now = timezone.now()
    body = event_body(
        topic=TEST_TOPIC,
        project_id=webhook.project_id,
        data={"webhook_id": str(webhook.pk), "message": "A test event from Apertur."},
        timestamp=now,
    )
    message_id = f"test_{uuid.uuid4()}"
    outcome = _post(webhook, topic=TEST_TOPIC, message_id=message_id, body=body, extra={})
    if not outcome.error:
        return f"Test event delivered: HTTP {outcome.response_code}."
    return f"Test event not delivered: {outcome.error}."


# --- one attempt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery: EventDelivery
    attempt: int


def _budget(webhook: EventWebhook) -> int:
    return webhook.max_retries + 1


def _waits_for_earlier(delivery: EventDelivery) -> bool:
    """Whether an older delivery of the same webhook and session is not final yet: events of one session reach
    a webhook in the order they happened."""
    if not delivery.ordering_key:
        return False
    return (
        EventDelivery.objects.filter(
            webhook_id=delivery.webhook_id, ordering_key=delivery.ordering_key, status=Status.RETRYING
        )
        .filter(Q(created_at__lt=delivery.created_at) | Q(created_at=delivery.created_at, pk__lt=delivery.pk))
        .exists()
    )


def _in_flight(delivery: EventDelivery, now) -> tuple[int, int]:
    """Attempts running now (unexpired leases) for this delivery's webhook, and for its project's webhooks."""
    running = EventDelivery.objects.filter(status=Status.RETRYING, lease_expires_at__gt=now).exclude(pk=delivery.pk)
    return (
        running.filter(webhook_id=delivery.webhook_id).count(),
        running.filter(webhook__project_id=delivery.webhook.project_id).count(),
    )


def _over_concurrency_cap(delivery: EventDelivery, now) -> bool:
    """Fairness: one project's slow receivers may hold only so many worker threads, which image deliveries share
    (docs/api.md "Event webhooks"). Per webhook the count is exact (its row is locked); per project it may overshoot
    by the project's other webhooks claiming at the same moment."""
    for_webhook, for_project = _in_flight(delivery, now)
    return (
        for_webhook >= settings.APERTUR_EVENT_WEBHOOK_CONCURRENCY
        or for_project >= settings.APERTUR_EVENT_PROJECT_CONCURRENCY
    )


def _put_back(delivery: EventDelivery, now, *, wait: float, for_slot: bool) -> None:
    """Not an attempt: the delivery waits — for an earlier event of its session (`_ring_next` rings it when that one
    ends), or for a slot (`for_slot`: the next attempt of its webhook or project to end hands its slot on,
    `_hand_on_slot`). The sweeper looks again after `wait` anyway, in case that ring was lost."""
    due = now + timedelta(seconds=wait)
    EventDelivery.objects.filter(pk=delivery.pk).update(next_retry_at=due, enqueued_at=due, waiting_for_slot=for_slot)


def _claim(delivery_id: str) -> Claim | None:
    webhook_id = EventDelivery.objects.filter(pk=delivery_id).values_list("webhook_id", flat=True).first()
    if webhook_id is None:
        return None
    with transaction.atomic():
        # Lock order: the webhook, then its delivery — as recording an outcome and deleting a webhook take them.
        webhook = EventWebhook.objects.select_for_update(no_key=True).filter(pk=webhook_id).first()
        delivery = (
            EventDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("webhook", "event")
            .filter(pk=delivery_id)
            .first()
        )
        if webhook is None:
            return None
        now = database_now()
        if delivery is None or delivery.status in EventDelivery.TERMINAL:
            return None
        if delivery.lease_expires_at is not None:
            if delivery.lease_expires_at > now:
                return None  # an attempt is running
            if delivery.attempts >= _budget(delivery.webhook):
                _finish(delivery, Status.FAILED, error="the worker stopped during the last attempt")
                return None
        elif delivery.next_retry_at is not None and delivery.next_retry_at > now:
            return None
        if not delivery.webhook.is_active:
            _finish(delivery, Status.FAILED, error="the webhook is switched off (isActive: false)")
            return None
        if _waits_for_earlier(delivery):
            # Parked: rung again when the earlier one ends (`_ring_next`), not by every sweep meanwhile.
            _put_back(delivery, now, wait=settings.APERTUR_EVENT_WAIT_SAFETY_SECONDS, for_slot=False)
            return None
        if _over_concurrency_cap(delivery, now):
            _put_back(delivery, now, wait=settings.APERTUR_EVENT_WAIT_SAFETY_SECONDS, for_slot=True)
            return None
        delivery.attempts += 1
        delivery.lease_expires_at = now + timedelta(
            seconds=settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS + settings.APERTUR_DELIVERY_LEASE_SECONDS
        )
        delivery.next_retry_at = None
        delivery.enqueued_at = None
        delivery.waiting_for_slot = False
        delivery.save(
            update_fields=[
                "attempts",
                "lease_expires_at",
                "next_retry_at",
                "enqueued_at",
                "waiting_for_slot",
                "updated_at",
            ]
        )
    return Claim(delivery=delivery, attempt=delivery.attempts)


def event_delivery_execute(*, delivery_id: str) -> None:
    """Run one attempt of an event delivery if it is due. Idempotent: safe for any id, any number of times."""
    claim = _claim(delivery_id)
    if claim is None:
        return
    delivery, event = claim.delivery, claim.delivery.event
    body = event_body(topic=event.topic, project_id=event.project_id, data=event.data, timestamp=event.created_at)
    extra = {
        "X-Apertur-Delivery-Id": str(delivery.pk),
        "X-Apertur-Event-Id": str(event.pk),
        "X-Apertur-Attempt": str(claim.attempt),
    }
    outcome = _post(delivery.webhook, topic=event.topic, message_id=str(delivery.pk), body=body, extra=extra)
    logger.info(
        "event delivery %s attempt %d (%s) to webhook %s: %s in %d ms",
        delivery.pk,
        claim.attempt,
        event.topic,
        delivery.webhook_id,
        outcome.error or f"HTTP {outcome.response_code}",
        outcome.duration_ms,
    )
    _record(claim, outcome)
    _hand_on_slot(delivery)


def _hand_on_slot(finished: EventDelivery) -> None:
    """The slot this attempt held goes to the delivery that has waited longest for one — of its webhook, else of
    its project — made due now, in turn rather than by polling."""
    waiting = EventDelivery.objects.filter(status=Status.RETRYING, waiting_for_slot=True).order_by("created_at", "pk")
    next_id = (
        waiting.filter(webhook_id=finished.webhook_id).values_list("pk", flat=True).first()
        or waiting.filter(webhook__project_id=finished.webhook.project_id).values_list("pk", flat=True).first()
    )
    if next_id is None:
        return
    now = database_now()
    made_due = EventDelivery.objects.filter(pk=next_id, status=Status.RETRYING, waiting_for_slot=True).update(
        next_retry_at=now, enqueued_at=now, waiting_for_slot=False
    )
    if made_due:  # two attempts ending at once may pick the same one; one rings it
        event_delivery_enqueue(str(next_id))


def _record(claim: Claim, outcome: Outcome) -> None:
    retry_in = None
    with transaction.atomic():
        # Lock order: the webhook, then its delivery, as a webhook's deletion takes them (no deadlock between them).
        webhook = EventWebhook.objects.select_for_update(no_key=True).filter(pk=claim.delivery.webhook_id).first()
        delivery = EventDelivery.objects.select_for_update(of=("self",)).filter(pk=claim.delivery.pk).first()
        # Gone (webhook deleted), or no longer this attempt's (its lease ran out and another worker took over).
        ours = delivery is not None and delivery.status == Status.RETRYING and delivery.attempts == claim.attempt
        if webhook is None or not ours:
            return
        delivery.response_code = outcome.response_code
        delivery.response_body = outcome.response_body
        delivery.duration_ms = outcome.duration_ms
        if not outcome.error:
            if webhook.consecutive_failures:
                EventWebhook.objects.filter(pk=webhook.pk).update(consecutive_failures=0)
            _finish(delivery, Status.SENT, error="")
            return
        _count_failure(webhook)
        if webhook.is_active and delivery.attempts < _budget(webhook):
            intervals = webhook.retry_intervals
            retry_in = intervals[min(delivery.attempts, len(intervals)) - 1]
            delivery.next_retry_at = database_now() + timedelta(seconds=retry_in)  # claims judge by this clock
            delivery.enqueued_at = delivery.next_retry_at if retry_in <= BROKER_DELAY_LIMIT_SECONDS else None
            delivery.lease_expires_at = None
            delivery.last_error = outcome.error
            delivery.save()
        else:
            _finish(delivery, Status.FAILED, error=outcome.error)
    if retry_in is not None and retry_in <= BROKER_DELAY_LIMIT_SECONDS:
        event_delivery_enqueue(str(delivery.pk), delay_seconds=retry_in)


def _count_failure(webhook: EventWebhook) -> None:
    """Every failed attempt counts and any success resets the count; reaching `disableAfterFailures` switches the
    webhook off (docs/api.md "Event webhooks")."""
    webhook.consecutive_failures += 1
    changes: dict[str, Any] = {"consecutive_failures": webhook.consecutive_failures}
    if webhook.is_active and webhook.consecutive_failures >= webhook.disable_after_failures:
        webhook.is_active = False
        webhook.disabled_at = timezone.now()
        changes.update(is_active=False, disabled_at=webhook.disabled_at, updated_at=webhook.disabled_at)
        logger.warning(
            "event webhook %s of project %s switched off after %d consecutive failed attempts",
            webhook.pk,
            webhook.project_id,
            webhook.consecutive_failures,
        )
    EventWebhook.objects.filter(pk=webhook.pk).update(**changes)


def _finish(delivery: EventDelivery, status: str, *, error: str) -> None:
    """Make the delivery final (inside its transaction) and ring the next one of its session after commit."""
    delivery.status = status
    delivery.last_error = error
    delivery.next_retry_at = None
    delivery.lease_expires_at = None
    delivery.enqueued_at = None
    delivery.save()
    if delivery.ordering_key:
        transaction.on_commit(lambda: _ring_next(delivery))


def _ring_next(finished: EventDelivery) -> None:
    next_id = (
        EventDelivery.objects.filter(
            webhook_id=finished.webhook_id, ordering_key=finished.ordering_key, status=Status.RETRYING
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if next_id is not None:
        # Parked, waiting for this one (it never ran): due now, by the clock its claim judges by. One in a retry
        # wait of its own (after a manual retry) keeps it.
        now = database_now()
        EventDelivery.objects.filter(
            pk=next_id, status=Status.RETRYING, lease_expires_at__isnull=True, attempts=0
        ).update(next_retry_at=now, enqueued_at=now)
        event_delivery_enqueue(str(next_id))


def event_delivery_enqueue(delivery_id: str, *, delay_seconds: float = 0) -> None:
    """Ring the doorbell. A broker outage must not fail the caller: the sweeper re-sends what was not rung."""
    from delivery.actors import deliver_event  # here, not at the top: the actor module imports this one

    try:
        if delay_seconds > 0:
            deliver_event.send_with_options(args=(delivery_id,), delay=int(delay_seconds * 1000))
        else:
            deliver_event.send(delivery_id)
    except Exception:
        logger.warning("could not enqueue event delivery %s; the sweeper will send it", delivery_id, exc_info=True)


# --- operator actions and the sweeper -------------------------------------------------------------


def event_delivery_retry(*, delivery: EventDelivery) -> EventDelivery:
    """Manual retry: a failed delivery is sent again with a fresh attempt budget."""
    with transaction.atomic():
        delivery = (
            EventDelivery.objects.select_for_update(of=("self",))
            .select_related("webhook")
            .filter(pk=delivery.pk)
            .first()
        )
        if delivery is None:  # forgotten meanwhile (the retention purge)
            raise AppError(404, "NOT_FOUND", "Delivery not found.")
        if delivery.status != Status.FAILED:
            raise AppError(409, "NOT_FAILED", f"Only failed deliveries can be retried; this one is {delivery.status}.")
        if not delivery.webhook.is_active:
            raise AppError(409, "WEBHOOK_INACTIVE", "The webhook is switched off; set isActive to true first.")
        now = database_now()
        delivery.status = Status.RETRYING
        delivery.attempts = 0
        delivery.next_retry_at = now
        delivery.enqueued_at = now
        delivery.save(update_fields=["status", "attempts", "next_retry_at", "enqueued_at", "updated_at"])
        transaction.on_commit(lambda: event_delivery_enqueue(str(delivery.pk)))
    return delivery


def event_deliveries_sweep() -> int:
    """Re-send every event delivery that is due and not running (lost doorbells, dead workers, long waits)."""
    now = database_now()
    resend_before = now - timedelta(seconds=settings.APERTUR_SWEEP_RESEND_AFTER_SECONDS)
    due = EventDelivery.objects.filter(status=Status.RETRYING).filter(
        Q(lease_expires_at__isnull=True, next_retry_at__lte=now) | Q(lease_expires_at__lte=now)
    )
    ids = list(
        due.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=resend_before)).values_list("id", flat=True)[:1000]
    )
    if ids:
        EventDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        for delivery_id in ids:
            event_delivery_enqueue(str(delivery_id))
    return len(ids)


def event_log_purge() -> int:
    """Forget events whose deliveries are all final and unchanged for APERTUR_EVENT_LOG_RETENTION_DAYS, with those
    deliveries (at most PURGE_BATCH per call: the sweeper calls again). Returns how many events went.

    The deliveries are locked and checked again before the delete: a manual retry that came in between either
    waits and finds its delivery gone (404), or is seen and keeps the event."""
    cutoff = timezone.now() - timedelta(days=settings.APERTUR_EVENT_LOG_RETENTION_DAYS)
    with transaction.atomic():
        candidates = list(
            EventLog.objects.filter(created_at__lt=cutoff)
            .exclude(deliveries__status=Status.RETRYING)
            .exclude(deliveries__updated_at__gte=cutoff)
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not candidates:
            return 0
        kept = {
            event_id
            for event_id, status, updated_at in EventDelivery.objects.select_for_update()
            .filter(event_id__in=candidates)
            .values_list("event_id", "status", "updated_at")
            if status == Status.RETRYING or updated_at >= cutoff
        }
        ids = [event_id for event_id in candidates if event_id not in kept]
        EventLog.objects.filter(pk__in=ids).delete()
    return len(ids)
