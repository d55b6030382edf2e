"""A worker says once, at INFO, that it is up: how many threads and which broker, never the broker's password."""

import logging
import threading

import dramatiq
import pytest
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from apertur.broker import broker_description, start_embedded_worker


def test_the_embedded_worker_logs_one_line_with_its_threads_and_broker(transactional_db, settings, caplog):
    settings.APERTUR_EMBEDDED_WORKER_THREADS = 3
    caplog.set_level(logging.INFO, logger="apertur.broker")

    worker = start_embedded_worker()
    worker.stop(timeout=10_000)

    lines = [record for record in caplog.records if "delivery worker started" in record.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    message = lines[0].getMessage()
    assert "in the web process: 3 threads" in message
    assert broker_description(dramatiq.get_broker()) in message


@pytest.fixture
def database_settings_restored():
    """Booting a worker of its own changes the process's database settings (apertur/broker.py
    `keep_worker_connections`): put them back for the tests that follow."""
    database = connections.settings[DEFAULT_DB_ALIAS]
    before = {key: database.get(key) for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}
    yield
    database.update(before)


def _connection_kept_across_messages() -> bool:
    """Whether a new thread's connection survives what DbConnectionsMiddleware does between two messages."""
    kept = []

    def run() -> None:
        connection.ensure_connection()
        before = connection.connection
        close_old_connections()
        kept.append(connection.connection is before)
        connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return kept[0]


def test_a_worker_process_of_its_own_keeps_its_threads_database_connections(
    transactional_db, settings, database_settings_restored
):
    settings.APERTUR_WORKER_DB_CONN_MAX_AGE = 120
    assert not _connection_kept_across_messages()  # a web process: one connection per request

    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=1)
    worker.start()
    worker.stop(timeout=10_000)

    assert connections.settings[DEFAULT_DB_ALIAS]["CONN_MAX_AGE"] == 120
    assert _connection_kept_across_messages()


def test_an_embedded_worker_leaves_the_web_process_a_connection_per_request(
    transactional_db, settings, database_settings_restored
):
    settings.APERTUR_WORKER_DB_CONN_MAX_AGE = 120
    worker = start_embedded_worker()
    worker.stop(timeout=10_000)

    assert connections.settings[DEFAULT_DB_ALIAS]["CONN_MAX_AGE"] == 0
    assert not _connection_kept_across_messages()


def test_a_rundramatiq_worker_boot_logs_the_line_too(transactional_db, caplog, database_settings_restored):
    caplog.set_level(logging.INFO, logger="apertur.broker")

    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=2)
    worker.start()
    worker.stop(timeout=10_000)

    assert any("in a worker process: 2 threads" in record.getMessage() for record in caplog.records)


def test_the_broker_is_described_by_kind_and_host_never_by_its_url(settings):
    settings.DRAMATIQ_BROKER_URL = "redis://apertur:hunter2-secret@redis.internal:6380/0"
    described = broker_description(RedisBroker(url=settings.DRAMATIQ_BROKER_URL))
    assert described == "Redis broker at redis.internal:6380"
    assert "hunter2" not in described and "apertur:" not in described

    assert broker_description(StubBroker()) == "in-process broker"
