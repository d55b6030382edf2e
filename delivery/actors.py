"""Dramatiq actors: thin, take ids, call services. Retries are the delivery service's, not Dramatiq's."""

import dramatiq
from django.conf import settings

from delivery import services

# A last resort behind the attempt's own deadline (which ends its sockets): an attempt stuck past both is
# interrupted; its lease is no longer renewed then, so the sweeper has it re-attempted.
DELIVERY_TIME_LIMIT_MS = int((settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT + 30) * 1000)


# No Retries middleware is installed, so Dramatiq never re-runs a delivery on its own.
@dramatiq.actor(queue_name="deliveries", time_limit=DELIVERY_TIME_LIMIT_MS)
def deliver(delivery_id: str) -> None:
    services.delivery_execute(delivery_id=delivery_id)
