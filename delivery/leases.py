"""Leases as heartbeats (docs/deployment.md "Delivery"): an attempt holds its delivery row only while its worker
process keeps renewing the lease.

Leases are short (APERTUR_DELIVERY_LEASE_SECONDS, 30 s by default) and one thread per process renews every
lease it holds a few times per lease, in one UPDATE. A worker killed mid-attempt stops renewing, its lease runs
out, and the sweeper has the delivery re-attempted within about a lease; a slow attempt whose worker is alive is
never taken over.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from delivery.models import Delivery

logger = logging.getLogger(__name__)
RENEWALS_PER_LEASE = 3


def database_now() -> datetime:
    """The database's clock. Leases are set by one worker and judged by another, maybe on another machine: both
    read this one clock, so a worker whose own clock runs fast never takes over a live attempt. SQLite serves one
    machine, whose clock is the only one."""
    if settings.IS_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


def lease_expiry() -> datetime:
    return database_now() + timedelta(seconds=settings.APERTUR_DELIVERY_LEASE_SECONDS)


class LeaseKeeper:
    def __init__(self) -> None:
        # One entry per holding (a token → the delivery id and when to stop renewing): an attempt taken over in
        # this same process and its successor each hold their own, so the first to end never stops the other.
        self._held: dict[object, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    @contextmanager
    def holding(self, delivery_id: str, *, until: float) -> Iterator[None]:
        """Keep renewing this delivery's lease until the block ends, but not past `until` (time.monotonic()): an
        attempt stuck beyond its deadline and grace loses its lease, so another worker runs the delivery."""
        token = object()
        with self._lock:
            self._held[token] = (delivery_id, until)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="apertur-lease-keeper", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                del self._held[token]

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.APERTUR_DELIVERY_LEASE_SECONDS / RENEWALS_PER_LEASE)
            now = time.monotonic()
            with self._lock:
                held = sorted({delivery_id for delivery_id, until in self._held.values() if until > now})
            if not held:
                continue
            try:
                Delivery.objects.filter(pk__in=held, status=Delivery.Status.DELIVERING).update(
                    lease_expires_at=lease_expiry()
                )
            except Exception:
                logger.exception("could not renew %d delivery leases; retrying", len(held))
                close_old_connections()
            finally:
                # One short query per tick: do not keep a connection open between ticks.
                connection.close()


lease_keeper = LeaseKeeper()
