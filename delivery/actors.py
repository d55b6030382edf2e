"""Dramatiq actors: thin, take ids, call services. Retries are the delivery service's, not Dramatiq's."""

import dramatiq
from django.conf import settings

from delivery import event_webhooks, services

# A last resort behind the attempt's own deadline (which ends its sockets): an attempt stuck past both is
# interrupted; its lease is no longer renewed then, so the sweeper has it re-attempted.
DELIVERY_TIME_LIMIT_MS = int((settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT + 30) * 1000)


# No Retries middleware is installed, so Dramatiq never re-runs a delivery on its own.
@dramatiq.actor(queue_name="deliveries", time_limit=DELIVERY_TIME_LIMIT_MS)
def deliver(delivery_id: str) -> None:
    services.delivery_execute(delivery_id=delivery_id)


# An event delivery is one small POST within APERTUR_OUTBOUND_TIMEOUT_SECONDS (delivery/event_webhooks.py).
EVENT_DELIVERY_TIME_LIMIT_MS = int((settings.APERTUR_OUTBOUND_TIMEOUT_SECONDS + 30) * 1000)


@dramatiq.actor(queue_name="deliveries", time_limit=EVENT_DELIVERY_TIME_LIMIT_MS)
def deliver_event(event_delivery_id: str) -> None:
    event_webhooks.event_delivery_execute(delivery_id=event_delivery_id)
