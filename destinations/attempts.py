"""What one delivery attempt (or destination test) needs of its destination: the backend with its context, the
secrets store it writes refreshed tokens back to, and the one recorder of outcomes.

Both the delivery engine and the destination services use it; it depends on models and backends only (and on
delivery/project_events.py, which depends on models only).
"""

import copy
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apertur.deadlines import Deadline
from delivery.project_events import destination_needs_reconnect_event
from destinations.backends import backend_class
from destinations.backends.base import AttemptContext, DestinationBackend, SecretsStore, merge_secrets
from destinations.models import Destination


class DestinationSecretsStore(SecretsStore):
    """A destination's stored secrets, read fresh and written back while no other worker holds them.

    Held by a lock per destination in this process and, on PostgreSQL, a session-level advisory lock, which
    serialises workers on every machine. No transaction stays open while the holder works (a token refresh is an
    HTTP call): on SQLite a transaction holds the database-wide write lock and would stall every upload, and on
    PostgreSQL a row lock would hold up the uploads' foreign-key checks. The secrets are read when the lock is
    taken and written back in one short UPDATE. SQLite serves one process (the embedded default), so its process
    lock is enough."""

    _process_locks: ClassVar[dict[str, threading.Lock]] = {}
    _process_locks_guard = threading.Lock()

    def __init__(self, destination_id: str) -> None:
        self.destination_id = destination_id

    def _process_lock(self) -> threading.Lock:
        with self._process_locks_guard:
            return self._process_locks.setdefault(self.destination_id, threading.Lock())

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with self._process_lock(), database_lock(f"destination-secrets:{self.destination_id}"):
            stored = Destination.objects.filter(pk=self.destination_id).values_list("secrets", flat=True).get()
            working = copy.deepcopy(stored or {})
            before = copy.deepcopy(working)
            yield working
            if working != before:
                Destination.objects.filter(pk=self.destination_id).update(secrets=working, updated_at=timezone.now())


@contextmanager
def database_lock(name: str) -> Iterator[None]:
    """An exclusive lock named `name` across every process using the database: a PostgreSQL session-level
    advisory lock, which needs no open transaction (and is released if the connection drops). A no-op on
    SQLite, which serves one process."""
    if not settings.IS_POSTGRES:
        yield
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except BaseException:
            # A lock left held would outlive this attempt on a kept connection (apertur/broker.py
            # `keep_worker_connections`): closing the connection releases it.
            connection.close()
            raise


def destination_record_outcome(
    *,
    destination_id: str,
    delivered_at: datetime | None = None,
    error: str | None = None,
    needs_reconnect: bool | None = None,
) -> None:
    """What the dashboard and API show of a destination's health, after a delivery attempt or a test.

    Success (no error) clears the last error and the reconnect flag; a failure records its error and flags a
    reconnect only when the destination refused the credentials."""
    changes: dict[str, Any] = {}
    if error is None:
        changes.update(last_error="", needs_reconnect=False)
    else:
        changes["last_error"] = error[:1000]
    if delivered_at is not None:
        changes["last_delivery_at"] = delivered_at
    with transaction.atomic(savepoint=False):
        if needs_reconnect:
            destination_flag_needs_reconnect(destination_id=destination_id, error=error or "")
        Destination.objects.filter(pk=destination_id).update(**changes)


def destination_flag_needs_reconnect(*, destination_id: str, error: str) -> None:
    """Flag a reconnect; when the flag was off, the project event `project.destination.needs_reconnect` is
    recorded in the same transaction (delivery/project_events.py), so it is sent once per flagging."""
    with transaction.atomic(savepoint=False):
        flagged = Destination.objects.filter(pk=destination_id, needs_reconnect=False).update(needs_reconnect=True)
        if flagged:
            destination_needs_reconnect_event(destination=Destination.objects.get(pk=destination_id), error=error)


def backend_for(
    destination: Destination, *, deadline: Deadline | None = None, keep_connections: bool = False
) -> DestinationBackend:
    """The destination's backend, with a context for one attempt (`keep_connections`: see AttemptContext). Raises
    ConfigValidationError when the stored config no longer validates."""
    config = backend_class(destination.type).Config.model_validate(
        merge_secrets(destination.config, destination.secrets)
    )
    context = AttemptContext(
        destination_id=str(destination.pk),
        secrets=DestinationSecretsStore(str(destination.pk)),
        deadline=deadline or Deadline(settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT),
        record_outcome=partial(destination_record_outcome, destination_id=str(destination.pk)),
        keep_connections=keep_connections,
    )
    return backend_class(destination.type)(config, context)


def deadline_message(deadline: Deadline) -> str:
    return f"the attempt did not finish within its {deadline.seconds:g} s deadline"
