"""Session events: what `sessions_app.status.session_changed` publishes once the change has committed.

Subscribers (the live-event feeds, long polls and event webhooks) register a callback; publication happens only
after the transaction that made the change commits, so nobody hears of a change that was rolled back.
Event names and their data are listed in `sessions_app.status.SessionEvent`.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    session_id: str
    name: str
    changed_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]
_subscribers: list[Subscriber] = []


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call `callback` with every published event; returns the function that unsubscribes it."""
    _subscribers.append(callback)
    return lambda: _subscribers.remove(callback)


def publish(event: Event) -> None:
    """Hand an event to every subscriber. A failing subscriber is logged and never fails the change."""
    for callback in list(_subscribers):
        try:
            callback(event)
        except Exception:
            logger.exception("event subscriber %r failed on %s", callback, event.name)
