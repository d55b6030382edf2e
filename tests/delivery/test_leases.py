"""Leases as heartbeats: renewed while an attempt is held, per holding, and never past the holding's bound."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from delivery import leases, services
from delivery.leases import LeaseKeeper, database_now, lease_expiry
from delivery.models import Delivery
from delivery.services import deliveries_sweep, delivery_execute
from tests.destinations.helpers import create_destination, create_session, upload_image
from tests.factories import image_bytes, wait_until

LEASE = 0.3


@pytest.fixture
def in_flight(api_client, owner, transactional_db, settings):
    """A delivery an attempt is running for, with a lease about to run out."""
    settings.APERTUR_DELIVERY_LEASE_SECONDS = LEASE
    destination = create_destination(
        api_client, owner, "webhook", {"url": "http://127.0.0.1:9/", "secret": "lease-secret-1"}
    )
    session = create_session(api_client, owner, [destination["id"]])
    delivery = Delivery.objects.get(image_id=upload_image(api_client, session["id"], image_bytes())["id"])
    Delivery.objects.filter(pk=delivery.pk).update(
        status="delivering", lease_expires_at=timezone.now() + timedelta(seconds=LEASE)
    )
    return delivery


def lease_of(delivery: Delivery):
    return Delivery.objects.values_list("lease_expires_at", flat=True).get(pk=delivery.pk)


def test_a_held_lease_keeps_moving_past_its_expiry(in_flight):
    keeper, first = LeaseKeeper(), lease_of(in_flight)

    with keeper.holding(str(in_flight.pk), until=time.monotonic() + 30):
        wait_until(lambda: lease_of(in_flight) > first + timedelta(seconds=LEASE), timeout=5)
        assert lease_of(in_flight) > timezone.now()


def test_when_an_attempt_taken_over_in_this_process_ends_its_successors_lease_is_still_renewed(in_flight):
    keeper = LeaseKeeper()
    old_attempt = keeper.holding(str(in_flight.pk), until=time.monotonic() + 30)
    old_attempt.__enter__()
    with keeper.holding(str(in_flight.pk), until=time.monotonic() + 30):
        old_attempt.__exit__(None, None, None)  # the stale attempt finishes first
        renewed_after = lease_of(in_flight)
        wait_until(lambda: lease_of(in_flight) > renewed_after + timedelta(seconds=LEASE), timeout=5)


def test_renewal_stops_at_the_holdings_bound_so_a_stuck_attempt_loses_its_lease(in_flight):
    keeper = LeaseKeeper()

    with keeper.holding(str(in_flight.pk), until=time.monotonic() + 0.5):
        # Past the bound no renewal comes: the lease runs out while the (stuck) attempt still holds it.
        wait_until(lambda: lease_of(in_flight) < timezone.now() - timedelta(seconds=LEASE), timeout=5)


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SQLite serves one machine: its clock is the only one")
def test_a_worker_whose_clock_runs_an_hour_fast_does_not_take_over_a_live_attempt(in_flight, monkeypatch):
    live_until = database_now() + timedelta(seconds=20)
    Delivery.objects.filter(pk=in_flight.pk).update(lease_expires_at=live_until)
    fast_clock = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(services.timezone, "now", lambda: fast_clock)
    monkeypatch.setattr(leases.timezone, "now", lambda: fast_clock)

    delivery_execute(delivery_id=str(in_flight.pk))
    swept = deliveries_sweep()

    in_flight.refresh_from_db()
    assert (in_flight.status, in_flight.attempts, in_flight.lease_expires_at) == ("delivering", 0, live_until)
    assert swept == 0
    assert lease_expiry() < fast_clock - timedelta(minutes=50)  # renewals read the database's clock too
