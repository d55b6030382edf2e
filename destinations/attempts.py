"""What one delivery attempt (or destination test) needs of its destination: the backend with its context, the
secrets store it writes refreshed tokens back to, and the one recorder of outcomes.

Both the delivery engine and the destination services use it; it depends on models and backends only.
"""

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apertur.deadlines import Deadline
from destinations.backends import backend_class
from destinations.backends.base import AttemptContext, DestinationBackend, SecretsStore, merge_secrets
from destinations.models import Destination


class DestinationSecretsStore(SecretsStore):
    """A destination's stored secrets, read fresh and written back under its row lock (PostgreSQL) and a
    process-wide lock (SQLite, whose embedded workers are threads of one process: holding its database-wide
    write lock across a token refresh would stall every upload)."""

    _process_locks: ClassVar[dict[str, threading.Lock]] = {}
    _process_locks_guard = threading.Lock()

    def __init__(self, destination_id: str) -> None:
        self.destination_id = destination_id

    def _process_lock(self) -> threading.Lock:
        with self._process_locks_guard:
            return self._process_locks.setdefault(self.destination_id, threading.Lock())

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with self._process_lock(), transaction.atomic():
            rows = Destination.objects.filter(pk=self.destination_id)
            if settings.IS_POSTGRES:
                # NO KEY: deliveries being inserted for this destination (an upload's foreign-key check) must
                # not wait for a token refresh.
                rows = rows.select_for_update(no_key=True)
            stored = rows.values_list("secrets", flat=True).get()
            working = copy.deepcopy(stored or {})
            before = copy.deepcopy(working)
            yield working
            if working != before:
                Destination.objects.filter(pk=self.destination_id).update(secrets=working, updated_at=timezone.now())


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
    if needs_reconnect:
        changes["needs_reconnect"] = True
    Destination.objects.filter(pk=destination_id).update(**changes)


def backend_for(destination: Destination, *, deadline: Deadline | None = None) -> DestinationBackend:
    """The destination's backend, with a context for one attempt. Raises ConfigValidationError when the stored
    config no longer validates."""
    config = backend_class(destination.type).Config.model_validate(
        merge_secrets(destination.config, destination.secrets)
    )
    context = AttemptContext(
        destination_id=str(destination.pk),
        secrets=DestinationSecretsStore(str(destination.pk)),
        deadline=deadline or Deadline(settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT),
        record_outcome=partial(destination_record_outcome, destination_id=str(destination.pk)),
    )
    return backend_class(destination.type)(config, context)


def deadline_message(deadline: Deadline) -> str:
    return f"the attempt did not finish within its {deadline.seconds:g} s deadline"
