"""Dramatiq set-up beyond django_dramatiq: the periodic sweeper and the embedded (in-process) worker.

The broker itself is configured in settings.DRAMATIQ_BROKER: Redis/RabbitMQ when DRAMATIQ_BROKER_URL is set,
otherwise Dramatiq's in-process StubBroker. With the stub, `manage.py apertur_run` starts worker threads inside
the web process; the database outbox makes that durable across restarts (the sweeper re-sends what was lost).
"""

import logging
import threading
from urllib.parse import urlsplit

import dramatiq
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connections
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


def sweep_once() -> None:
    """One tick of periodic work: due deliveries re-sent, expired sessions closed, old staged bytes and old events
    deleted."""
    from delivery.event_webhooks import event_log_purge
    from delivery.services import deliveries_sweep  # apps load after the broker module
    from sessions_app.services import images_purge_staged, sessions_expire_due

    close_old_connections()
    try:
        sent = deliveries_sweep()
        expired = sessions_expire_due()
        purged = images_purge_staged()
        events = event_log_purge()
        if events:
            logger.info("sweeper: forgot %d events older than the event log's retention", events)
        if sent or expired or purged:
            logger.info(
                "sweeper: re-sent %d deliveries, expired %d sessions, purged %d staged images", sent, expired, purged
            )
    finally:
        close_old_connections()


class Sweeper:
    """A daemon thread running sweep_once every APERTUR_SWEEP_INTERVAL_SECONDS until stopped."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval or settings.APERTUR_SWEEP_INTERVAL_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apertur-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sweep_once()
            except Exception:
                logger.exception("sweeper tick failed; next tick in %ss", self.interval)


def broker_description(broker: dramatiq.Broker) -> str:
    """The broker's kind and where it is, for logs: never the URL itself, which may carry a password."""
    kinds = {"StubBroker": "in-process", "RedisBroker": "Redis", "RabbitmqBroker": "RabbitMQ"}
    kind = kinds.get(type(broker).__name__, type(broker).__name__)
    if isinstance(broker, StubBroker):
        return f"{kind} broker"
    location = urlsplit(settings.DRAMATIQ_BROKER_URL)
    try:
        port = f":{location.port}" if location.port else ""
    except ValueError:  # a malformed port; the broker's own connection reports it
        port = ""
    return f"{kind} broker at {location.hostname or 'its default host'}{port}"


class SweeperMiddleware(Middleware):
    """Every worker process sweeps. Several sweepers are harmless: sweeping only rings doorbells.

    It also logs the one line saying a worker is up, for the embedded worker and `rundramatiq` alike: both emit
    after_worker_boot.
    """

    def after_worker_boot(self, broker, worker) -> None:
        worker.apertur_sweeper = Sweeper().start()
        where = "in the web process" if getattr(worker, "apertur_embedded", False) else "in a worker process"
        logger.info(
            "delivery worker started %s: %d threads on the %s, sweeping every %ss",
            where,
            worker.worker_threads,
            broker_description(broker),
            worker.apertur_sweeper.interval,
        )

    def before_worker_shutdown(self, broker, worker) -> None:
        sweeper = getattr(worker, "apertur_sweeper", None)
        if sweeper is not None:
            sweeper.stop()


class WorkerStartMiddleware(Middleware):
    """What every worker process makes sure of when it boots: the encryption key pair exists, so the GET endpoints
    that show its public key (and never write) have one to show; and a worker process of its own keeps its
    threads' database connections (`keep_worker_connections`)."""

    def after_worker_boot(self, broker, worker) -> None:
        from sessions_app.encryption import encryption_key_ensure  # apps load after the broker module

        close_old_connections()
        try:
            encryption_key_ensure()
        except DatabaseError:
            # The worker is still useful once the database is back; session creation makes the key then.
            logger.exception("could not make sure the encryption key pair exists")
        finally:
            close_old_connections()
        # After the boot's own queries: this thread's connection was opened before, so it is closed above and this
        # main thread, which runs no messages, keeps none.
        if not getattr(worker, "apertur_embedded", False):
            keep_worker_connections(settings.APERTUR_WORKER_DB_CONN_MAX_AGE)


def keep_worker_connections(max_age: int) -> None:
    """Let each thread of this worker process keep its database connection for `max_age` seconds (checked before
    reuse) instead of opening one per message: a PostgreSQL connection costs milliseconds of both processes' CPU
    (docs/deployment.md "Several processes or machines").

    Only for a worker process of its own, whose threads live as long as it does. Web processes open one per request:
    they serve requests in threads that come and go, whose kept connections would be left behind (Django's advice for
    ASGI), and so does a worker embedded in one, as it shares their settings."""
    if max_age <= 0:
        return
    database = connections.settings[DEFAULT_DB_ALIAS]
    database["CONN_MAX_AGE"] = max_age
    database["CONN_HEALTH_CHECKS"] = True


def start_embedded_worker() -> dramatiq.Worker:
    """Worker threads in this process on the configured broker (the in-process one by default)."""
    import delivery.actors  # noqa: F401 (declares the actors on the broker)

    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=settings.APERTUR_EMBEDDED_WORKER_THREADS)
    worker.apertur_embedded = True  # for the start-up log line (SweeperMiddleware)
    worker.start()
    return worker
