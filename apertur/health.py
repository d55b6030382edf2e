"""GET /healthz: is the database reachable, is the broker reachable."""

import dramatiq
from django.db import connection
from django.http import JsonResponse


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    broker = dramatiq.get_broker()
    try:
        if hasattr(broker, "client"):  # Redis
            broker.client.ping()
        elif hasattr(broker, "connection"):  # RabbitMQ
            broker.connection  # noqa: B018 (opening it is the check)
        return True
    except Exception:
        return False


def healthz(request) -> JsonResponse:
    parts = {"database": "ok" if _database_ok() else "unavailable", "broker": "ok" if _broker_ok() else "unavailable"}
    healthy = all(value == "ok" for value in parts.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", **parts}, status=200 if healthy else 503)
