"""The delivery engine (docs/api.md "Delivery"): outbox rows, one attempt at a time, retries on one schedule,
the sweeper."""

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Case, Count, Q, When
from django.utils import timezone
from pydantic import ValidationError as ConfigValidationError

from apertur.deadlines import Deadline
from apertur.errors import AppError
from delivery.event_webhooks import event_deliveries_sweep
from delivery.leases import database_now, lease_expiry, lease_keeper
from delivery.models import Delivery, DeliveryAttempt
from destinations.attempts import backend_for, deadline_message, destination_record_outcome
from destinations.backends.base import DeliveryError, DeliveryReceipt, StagedImage
from destinations.models import Destination
from projects.models import Project
from sessions_app.models import Image
from sessions_app.status import SessionEvent, session_changed

logger = logging.getLogger(__name__)
Status = Delivery.Status
ERROR_TEXT_LIMIT = 2000
# Retries this close are handed to the broker as delayed messages for punctuality; longer ones are
# left to the sweeper so an hour-long wait never sits in the broker.
BROKER_DELAY_LIMIT_SECONDS = 120
# How many waiting deliveries one worker thread runs in a row as their slots free up (see delivery_execute), and
# for how long it starts new ones: the actor's time limit leaves 30 s beyond one attempt's deadline.
SLOT_HAND_OVERS = 20
SLOT_HAND_OVER_SECONDS = 20


def max_attempts() -> int:
    return len(settings.APERTUR_RETRY_DELAYS) + 1


def _enqueue(delivery_id, *, delay_seconds: float = 0) -> None:
    """Ring the doorbell. It runs after commit, so a broker outage must not fail the request that committed
    the row (the client would retry and duplicate the image): the sweeper re-sends what was not rung."""
    from delivery.actors import deliver  # here, not at the top: the actor module imports this one

    try:
        if delay_seconds > 0:
            deliver.send_with_options(args=(str(delivery_id),), delay=int(delay_seconds * 1000))
        else:
            deliver.send(str(delivery_id))
    except Exception:
        logger.warning("could not enqueue delivery %s; the sweeper will send it", delivery_id, exc_info=True)


def deliveries_create_for_image(*, image: Image, destinations: list[Destination]) -> list[Delivery]:
    """Outbox rows, inside the upload's transaction; `deliveries_send_after_commit` rings their doorbell."""
    now = timezone.now()
    return Delivery.objects.bulk_create(
        [
            Delivery(image=image, destination=destination, next_retry_at=now, enqueued_at=now)
            for destination in destinations
        ]
    )


def deliveries_send_after_commit(deliveries: list[Delivery]) -> None:
    """Start new deliveries once the surrounding transaction commits. Commit callbacks run in the order they were
    registered: register this after the `session_changed` that announces their image, or a live client could
    hear an attempt before the image (docs/api.md "Live events")."""
    for delivery in deliveries:
        transaction.on_commit(lambda delivery_id=delivery.id: _enqueue(delivery_id))


# --- one attempt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery: Delivery
    attempt: DeliveryAttempt


def _finish_lost_attempt(delivery: Delivery, now) -> None:
    DeliveryAttempt.objects.filter(delivery=delivery, outcome=DeliveryAttempt.Outcome.RUNNING).update(
        outcome=DeliveryAttempt.Outcome.LOST, finished_at=now, error="the worker stopped during the attempt"
    )


def _claim(delivery_id: str) -> Claim | None:
    """Take the row for one attempt, or return None when it is not ours to run now."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("destination", "image__session")
            .filter(pk=delivery_id)
            .first()
        )
        now = database_now()  # leases are judged by the database's clock (delivery/leases.py)
        if delivery is None or delivery.status in Delivery.TERMINAL:
            return None
        if delivery.status == Status.PENDING and delivery.next_retry_at and delivery.next_retry_at > now:
            return None
        if delivery.status == Status.DELIVERING:
            if delivery.lease_expires_at and delivery.lease_expires_at > now:
                return None
            _finish_lost_attempt(delivery, now)
            if delivery.attempts >= max_attempts():
                _mark_failed(delivery, "the worker stopped during the last attempt", now)
                _announce_failure(delivery, final=True)
                return None
        if _over_concurrency_cap(delivery, now):
            _defer(delivery, now)
            return None
        delivery.attempts += 1
        delivery.status = Status.DELIVERING
        # From the clock read now, not `now`: the cap check may have waited for the project's row lock.
        delivery.lease_expires_at = lease_expiry()
        delivery.next_retry_at = None
        delivery.enqueued_at = None
        delivery.waiting_for_slot = False
        delivery.save(
            update_fields=[
                "attempts",
                "status",
                "lease_expires_at",
                "next_retry_at",
                "enqueued_at",
                "waiting_for_slot",
                "updated_at",
            ]
        )
        attempt = DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=now)
        session_changed(
            session=delivery.image.session,
            event=SessionEvent.DELIVERY_STARTED,
            **_delivery_facts(delivery),
            attempt=delivery.attempts,
        )
    return Claim(delivery=delivery, attempt=attempt)


def _over_concurrency_cap(delivery: Delivery, now) -> bool:
    """Fairness between tenants: a slow destination (or project) may hold only so many worker threads.

    The project row is locked first so two workers claiming for one project count each other (lock order:
    delivery → project → attempt → destination → session). NO KEY UPDATE: it must not block the foreign-key
    checks of rows being written for the project (PostgreSQL takes KEY SHARE locks for them at commit)."""
    project_id = delivery.destination.project_id
    list(Project.objects.select_for_update(no_key=True).filter(pk=project_id).values_list("pk", flat=True))
    in_flight = (
        Delivery.objects.filter(status=Status.DELIVERING, lease_expires_at__gt=now, destination__project_id=project_id)
        .exclude(pk=delivery.pk)
        .aggregate(project=Count("pk"), destination=Count("pk", filter=Q(destination_id=delivery.destination_id)))
    )
    return (
        in_flight["destination"] >= settings.APERTUR_DESTINATION_CONCURRENCY
        or in_flight["project"] >= settings.APERTUR_PROJECT_CONCURRENCY
    )


def _defer(delivery: Delivery, now) -> None:
    """Put a delivery over the cap back: not an attempt, not a failure. The worker whose attempt frees a slot next
    runs it (`delivery_execute` hands its slot on, oldest first); the delayed doorbell is only a fallback in case
    no attempt of its destination or project is running any more. The jitter spreads the fallbacks."""
    wait = settings.APERTUR_CONCURRENCY_DEFER_SECONDS * random.uniform(0.5, 1.5)
    if delivery.status == Status.DELIVERING:  # a lost attempt found over the cap waits as pending
        delivery.status = Status.PENDING
        delivery.lease_expires_at = None
    delivery.waiting_for_slot = True
    delivery.next_retry_at = now + timedelta(seconds=wait)
    delivery.enqueued_at = delivery.next_retry_at
    delivery.save(
        update_fields=["status", "lease_expires_at", "waiting_for_slot", "next_retry_at", "enqueued_at", "updated_at"]
    )
    transaction.on_commit(lambda: _enqueue(delivery.id, delay_seconds=wait))


def _oldest_waiting(finished: Delivery) -> str | None:
    """The delivery that has waited longest for a slot of `finished`'s destination, else of its project, made due
    now. Two workers may pick the same one; only one claims it."""
    next_id = (
        Delivery.objects.filter(
            status=Status.PENDING, waiting_for_slot=True, destination__project_id=finished.destination.project_id
        )
        .order_by(Case(When(destination_id=finished.destination_id, then=0), default=1), "created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if next_id is not None:
        Delivery.objects.filter(pk=next_id, status=Status.PENDING).update(next_retry_at=timezone.now())
    return next_id


def staged_image(delivery: Delivery, attempt_number: int) -> StagedImage:
    image = delivery.image
    return StagedImage(
        image_id=image.id,
        session_id=image.session_id,
        project_id=str(image.session.project_id),
        index=image.index,
        filename=image.filename,
        extension=image.extension,
        mime_type=image.mime_type,
        size_bytes=image.size_bytes,
        sha256=image.sha256,
        source=image.source,
        tags=list(image.session.tags),
        uploaded_at=image.created_at,
        delivery_id=str(delivery.id),
        attempt=attempt_number,
        opener=lambda: default_storage.open(image.staged_name, "rb"),
    )


def _attempt(destination: Destination, image: StagedImage, deadline: Deadline) -> DeliveryReceipt:
    if destination.deleted_at is not None:
        raise DeliveryError("destination deleted", permanent=True)
    if not destination.is_active:
        raise DeliveryError("the destination is switched off (isActive: false)")
    try:
        backend = backend_for(destination, deadline=deadline, keep_connections=True)
    except ConfigValidationError as error:
        raise DeliveryError(
            f"the destination's config is invalid: {error.errors()[0]['msg']}", permanent=True
        ) from error
    return backend.deliver(image, backend.remote_path(image))


def delivery_execute(*, delivery_id: str) -> None:
    """Run one attempt of a delivery if it is due. Idempotent: safe to call for any id, any number of times.

    When the attempt ends, its slot (see `_over_concurrency_cap`) goes straight to the delivery that has waited
    longest for one, in this same worker thread: no broker round trip, and no newcomer slips in between. After
    SLOT_HAND_OVERS attempts, or SLOT_HAND_OVER_SECONDS, the next one is rung through the broker instead, so one
    actor call stays within its time limit."""
    started = time.monotonic()
    claimed = _execute_one(delivery_id)
    for _ in range(SLOT_HAND_OVERS):
        if claimed is None:
            return
        next_id = _oldest_waiting(claimed)
        if next_id is None:
            return
        if time.monotonic() - started > SLOT_HAND_OVER_SECONDS:
            _enqueue(next_id)  # another attempt here could outlast the actor's time limit
            return
        claimed = _execute_one(next_id)
    if claimed is not None and (next_id := _oldest_waiting(claimed)) is not None:
        _enqueue(next_id)


def _execute_one(delivery_id: str) -> Delivery | None:
    """One attempt, if the delivery is ours to run now; returns the delivery that ran, else None."""
    claim = _claim(delivery_id)
    if claim is None:
        return None
    started = time.monotonic()
    image = staged_image(claim.delivery, claim.attempt.number)
    deadline = Deadline(settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT)
    # Renewed up to a lease past the deadline: room for a token refresh that must not be cut (see oauth.py).
    renew_until = deadline.expires_at + settings.APERTUR_DELIVERY_LEASE_SECONDS
    with lease_keeper.holding(str(claim.delivery.pk), until=renew_until), deadline:
        try:
            receipt = _attempt(claim.delivery.destination, image, deadline)
        except DeliveryError as failure:
            _record_failure(claim, DeliveryError(deadline_message(deadline)) if deadline.expired else failure, started)
        except FileNotFoundError:
            # The staged bytes are gone (retention purge, or staging storage lost them): no retry can help.
            _record_failure(claim, DeliveryError("the staged image is no longer available", permanent=True), started)
        except Exception as error:
            # A bug or an unexpected library error must not leave the row stuck in `delivering`.
            logger.exception("delivery %s: unexpected error", delivery_id)
            message = deadline_message(deadline) if deadline.expired else f"internal error: {type(error).__name__}"
            _record_failure(claim, DeliveryError(message), started)
        else:
            _record_success(claim, receipt, started)
    return claim.delivery


def _log_attempt(claim: Claim, outcome: str, started: float, detail: str = "") -> None:
    destination = claim.delivery.destination
    logger.info(
        "delivery %s attempt %d to %s destination %s: %s in %d ms%s",
        claim.delivery.pk,
        claim.attempt.number,
        destination.type,
        destination.pk,
        outcome,
        (time.monotonic() - started) * 1000,
        f" ({detail})" if detail else "",
    )


def _current(claim: Claim) -> Delivery | None:
    """The row, locked, if this attempt still owns it: still delivering, and its latest attempt is this one
    (a lease takeover or a manual retry makes an older attempt stale)."""
    delivery = (
        Delivery.objects.select_for_update(of=("self",)).select_related("image__session").get(pk=claim.delivery.pk)
    )
    # The claim's destination, not a second read of it: its type cannot change, and its secrets need no decrypting.
    delivery.destination = claim.delivery.destination
    latest_attempt = DeliveryAttempt.objects.filter(delivery=delivery).order_by("-pk").values_list("pk", flat=True)
    if delivery.status != Status.DELIVERING or latest_attempt.first() != claim.attempt.pk:
        return None
    return delivery


def _finish_attempt(claim: Claim, started: float, outcome: str, error: str = "", http_status=None) -> None:
    DeliveryAttempt.objects.filter(pk=claim.attempt.pk).update(
        outcome=outcome,
        finished_at=timezone.now(),
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error[:ERROR_TEXT_LIMIT],
        http_status=http_status,
    )


def _record_success(claim: Claim, receipt: DeliveryReceipt, started: float) -> None:
    with transaction.atomic():
        delivery = _current(claim)
        _finish_attempt(claim, started, DeliveryAttempt.Outcome.DELIVERED, http_status=receipt.http_status)
        _log_attempt(claim, "delivered" if delivery else "delivered (stale attempt, not recorded)", started)
        if delivery is None:
            return
        now = timezone.now()
        delivery.status = Status.DELIVERED
        delivery.delivered_at = now
        delivery.lease_expires_at = None
        delivery.last_error = ""
        delivery.remote_reference = receipt.remote_reference
        delivery.save(
            update_fields=["status", "delivered_at", "lease_expires_at", "last_error", "remote_reference", "updated_at"]
        )
        destination_record_outcome(destination_id=delivery.destination_id, delivered_at=now)
        session_changed(
            session=delivery.image.session,
            event=SessionEvent.DELIVERY_DELIVERED,
            **_delivery_facts(delivery),
            destination_type=delivery.destination.type,
        )


def _record_failure(claim: Claim, error: DeliveryError, started: float) -> None:
    retry_in = None
    with transaction.atomic():
        delivery = _current(claim)
        _finish_attempt(claim, started, DeliveryAttempt.Outcome.FAILED, error.message, error.http_status)
        _log_attempt(claim, "failed", started, error.message)
        if delivery is None:
            return
        now = timezone.now()
        delivery.lease_expires_at = None
        delivery.last_error = error.message[:ERROR_TEXT_LIMIT]
        final = error.permanent or delivery.attempts >= max_attempts()
        if final:
            _mark_failed(delivery, delivery.last_error, now)
        else:
            # A destination's own wait (Retry-After of a rate limit) lengthens the schedule, never shortens it.
            retry_in = max(settings.APERTUR_RETRY_DELAYS[delivery.attempts - 1], error.retry_after or 0)
            delivery.status = Status.PENDING
            delivery.next_retry_at = now + timedelta(seconds=retry_in)
            if retry_in <= BROKER_DELAY_LIMIT_SECONDS:
                delivery.enqueued_at = delivery.next_retry_at
            delivery.save(
                update_fields=["status", "next_retry_at", "enqueued_at", "lease_expires_at", "last_error", "updated_at"]
            )
        destination_record_outcome(
            destination_id=delivery.destination_id, error=delivery.last_error, needs_reconnect=error.needs_reconnect
        )
        _announce_failure(delivery, final=final)
        if retry_in is not None and retry_in <= BROKER_DELAY_LIMIT_SECONDS:
            transaction.on_commit(lambda: _enqueue(delivery.id, delay_seconds=retry_in))


def _mark_failed(delivery: Delivery, error: str, now) -> None:
    delivery.status = Status.FAILED
    delivery.next_retry_at = None
    delivery.lease_expires_at = None
    delivery.last_error = error
    delivery.save(update_fields=["status", "next_retry_at", "lease_expires_at", "last_error", "updated_at"])


def _delivery_facts(delivery: Delivery) -> dict[str, str]:
    return {
        "delivery_id": str(delivery.pk),
        "image_id": delivery.image_id,
        "destination_id": str(delivery.destination_id),
    }


def _announce_failure(delivery: Delivery, *, final: bool) -> None:
    session_changed(
        session=delivery.image.session,
        event=SessionEvent.DELIVERY_FAILED,
        **_delivery_facts(delivery),
        error=delivery.last_error,
        final=final,
    )


# --- operator actions -----------------------------------------------------------------------------


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Manual retry: a failed delivery goes back to pending with a fresh attempt budget."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("image__session", "destination")
            .get(pk=delivery.pk)
        )
        if delivery.status != Status.FAILED:
            raise AppError(409, "NOT_FAILED", f"Only failed deliveries can be retried; this one is {delivery.status}.")
        if delivery.destination.deleted_at is not None:
            raise AppError(409, "DESTINATION_DELETED", "The destination of this delivery was deleted.")
        if delivery.image.staged_deleted_at is not None:
            raise AppError(409, "IMAGE_NO_LONGER_STAGED", "The image's bytes were deleted after the retention period.")
        now = timezone.now()
        delivery.status = Status.PENDING
        delivery.attempts = 0
        delivery.next_retry_at = now
        delivery.enqueued_at = now
        delivery.save(update_fields=["status", "attempts", "next_retry_at", "enqueued_at", "updated_at"])
        session_changed(
            session=delivery.image.session, event=SessionEvent.DELIVERY_RETRIED, **_delivery_facts(delivery)
        )
        transaction.on_commit(lambda: _enqueue(delivery.id))
    return delivery


def deliveries_fail_for_deleted_destination(*, destination: Destination) -> int:
    """Pending work to a deleted destination can never succeed: fail it now, keep the history.

    Call inside a transaction, before touching the destination row (lock order: deliveries first)."""
    failed = 0
    for delivery in (
        Delivery.objects.select_for_update(of=("self",))
        .filter(destination=destination)
        .exclude(status__in=Delivery.TERMINAL)
        .select_related("image__session")
        .order_by("pk")
    ):
        _finish_lost_attempt(delivery, timezone.now())
        _mark_failed(delivery, "destination deleted", timezone.now())
        _announce_failure(delivery, final=True)
        failed += 1
    return failed


def deliveries_sweep() -> int:
    """Re-send every delivery that is due and not running: lost messages, dead workers, long retry waits; event
    webhooks' deliveries too (delivery/event_webhooks.py).

    Returns how many were sent. Sending twice is harmless (the actor is idempotent); `enqueued_at` only
    keeps the sweeper from ringing again for a row it rang recently.
    """
    now = database_now()
    resend_before = now - timedelta(seconds=settings.APERTUR_SWEEP_RESEND_AFTER_SECONDS)
    due = Delivery.objects.filter(
        Q(status=Status.PENDING, next_retry_at__lte=now) | Q(status=Status.DELIVERING, lease_expires_at__lte=now)
    ).filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=resend_before))
    ids = list(due.values_list("id", flat=True)[:1000])
    if ids:
        Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        for delivery_id in ids:
            _enqueue(delivery_id)
    return len(ids) + event_deliveries_sweep()
