"""Dramatiq actors: thin, take ids, call services. Retries are the delivery service's, not Dramatiq's."""

import dramatiq
from django.conf import settings

from delivery import services

# The time limit stays below the lease, so a stuck attempt is interrupted before another worker may take over.
DELIVERY_TIME_LIMIT_MS = int(settings.APERTUR_DELIVERY_LEASE_SECONDS * 0.9 * 1000)


# No Retries middleware is installed, so Dramatiq never re-runs a delivery on its own.
@dramatiq.actor(queue_name="deliveries", time_limit=DELIVERY_TIME_LIMIT_MS)
def deliver(delivery_id: str) -> None:
    services.delivery_execute(delivery_id=delivery_id)
