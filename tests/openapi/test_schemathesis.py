"""Schemathesis over the whole OpenAPI schema, against the real site (docs/api.md "OpenAPI"): every operation gets
generated requests, valid and invalid, with made-up ids and with the ids of a seeded project, and every answer must
be documented: no 5xx, a documented status and content type, a body that matches its schema.

Bounded: a few examples per operation and mode, no shrinking, derandomized (the same requests on every run), waits
cut to a second (held polls, `pollFrom`), all to 127.0.0.1.
"""

import os
import time
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from projects.services import api_key_create
from tests.conftest import ServerProcess, free_port
from tests.factories import image_bytes, make_persona

# A deeper search by hand: APERTUR_SCHEMATHESIS_EXAMPLES=50 (a few minutes).
EXAMPLES_PER_MODE = int(os.environ.get("APERTUR_SCHEMATHESIS_EXAMPLES", "8"))
pytestmark = pytest.mark.timeout(300 if EXAMPLES_PER_MODE <= 8 else 3600)
REQUEST_TIMEOUT_SECONDS = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    missing_required_header,
    ignored_auth,
    negative_data_rejection,
]


@pytest.fixture
def site(transactional_db, tmp_path):
    server = ServerProcess(
        with_worker=True,
        log_path=tmp_path / "server.log",
        # Waits cut short: a held poll or a pollFrom on a seeded session answers within a second.
        APERTUR_POLL_MAX_TIMEOUT_SECONDS="1",
        APERTUR_POLL_FROM_MAX_SECONDS="1",
        # Every generated request is counted; none may be refused for the rate.
        APERTUR_RATE_LIMIT_SESSION_CREATE="100000",
        APERTUR_RATE_LIMIT_SESSION_READ="100000",
        APERTUR_RATE_LIMIT_DEFAULT="100000",
        APERTUR_RATE_LIMIT_UPLOAD_PAGE="100000",
    )
    yield server
    server.stop()


SESSION_PASSWORD = "open-sesame"


class Seeded:
    """A project with real ids for the path parameters: an open long-polling session with an image and a delivery
    (its webhook listens nowhere, so the delivery keeps failing), an event webhook with the image's event delivery
    (listening nowhere on 127.0.0.1 too), and a completed session for the event streams
    (they end at once on an ended session); and the same two protected by a password, for the phone's endpoints."""

    def __init__(self, site: ServerProcess) -> None:
        persona = make_persona("owner")
        # A second key is the one the key endpoints change: the test's own key must keep working (no allow-list,
        # no signing secret, not revoked).
        spare_key, _ = api_key_create(project=persona.project, label="spare")
        self.headers = {"Authorization": f"Bearer {persona.plain_key}"}
        api = httpx.Client(base_url=site.url, headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS)
        # An event webhook listening nowhere, made before the upload so that the upload's event gives it a delivery.
        webhook = api.post(
            f"/api/v1/projects/{persona.project.pk}/webhooks",
            json={"url": f"http://127.0.0.1:{free_port()}/events", "topics": ["project.upload.*"], "maxRetries": 0},
        )
        assert webhook.status_code == 201, webhook.text
        # A second one is the one PATCH and DELETE change: the first must live on for its deliveries and test.
        spare_webhook = api.post(
            f"/api/v1/projects/{persona.project.pk}/webhooks",
            json={"url": f"http://127.0.0.1:{free_port()}/spare", "topics": ["project.session.expired"]},
        )
        assert spare_webhook.status_code == 201, spare_webhook.text
        self.spare_webhook_id = spare_webhook.json()["id"]
        destination = api.post(
            f"/api/v1/projects/{persona.project.pk}/destinations",
            json={
                "type": "webhook",
                "name": "Nobody listens",
                "config": {"url": f"http://127.0.0.1:{free_port()}/hook", "secret": "a shared secret"},
            },
        ).json()
        session = api.post(
            "/api/v1/upload-sessions", json={"long_polling": True, "destination_ids": [destination["id"]]}
        )
        self.session_id = session.json()["id"]
        upload = api.post(
            f"/api/v1/upload/{self.session_id}/images", files={"file": ("photo.png", image_bytes("PNG"), "image/png")}
        )
        assert upload.status_code == 201, upload.text
        self.image_id = upload.json()["id"]
        status = api.get(f"/api/v1/upload-sessions/{self.session_id}/delivery-status").json()
        self.delivery_id = status["images"][0]["deliveries"][0]["delivery_id"]
        webhook_deliveries = api.get(
            f"/api/v1/projects/{persona.project.pk}/webhooks/{webhook.json()['id']}/deliveries"
        )
        self.event_delivery_id = webhook_deliveries.json()["deliveries"][0]["id"]
        ended = api.post("/api/v1/upload-sessions", json={"long_polling": True}).json()["id"]
        assert api.post(f"/api/v1/upload/{ended}/complete").status_code == 200
        protected = {"long_polling": True, "password": SESSION_PASSWORD}
        self.protected_session_id = api.post("/api/v1/upload-sessions", json=protected).json()["id"]
        self.protected_ended_session_id = api.post("/api/v1/upload-sessions", json=protected).json()["id"]
        completed = api.post(
            f"/api/v1/upload/{self.protected_ended_session_id}/complete",
            headers={"x-session-password": SESSION_PASSWORD},
        )
        assert completed.status_code == 200, completed.text
        self.path_parameters = {
            "session_id": self.session_id,
            "image_id": self.image_id,
            "delivery_id": self.delivery_id,
            "project_id": str(persona.project.pk),
            "destination_id": destination["id"],
            "key_id": str(spare_key.pk),
            "webhook_id": webhook.json()["id"],
        }
        self.ended_session_id = ended
        api.close()

    def ids_for(self, path: str) -> dict[str, str]:
        ids = {name: value for name, value in self.path_parameters.items() if f"{{{name}}}" in path}
        if "/webhooks/" in path and "delivery_id" in ids:
            ids["delivery_id"] = self.event_delivery_id  # an event delivery, not an image's
        if path.endswith("/webhooks/{webhook_id}"):
            ids["webhook_id"] = self.spare_webhook_id
        if path.endswith("/events"):
            ids["session_id"] = self.ended_session_id
        return ids

    def protected_ids_for(self, path: str) -> dict[str, str]:
        ended = path.endswith("/events")
        return {"session_id": self.protected_ended_session_id if ended else self.protected_session_id}

    def variants(self, path: str) -> list[tuple[str, dict[str, str] | None, dict[str, str]]]:
        """(what, path parameters or None to generate them, extra headers) for one operation."""
        found: list[tuple[str, dict[str, str] | None, dict[str, str]]] = [("generated ids", None, {})]
        if "{" in path:
            found.append(("seeded ids", self.ids_for(path), {}))
        if path.startswith("/api/v1/upload/"):
            password = {"x-session-password": SESSION_PASSWORD}
            found.append(("a password-protected session", self.protected_ids_for(path), password))
        return found


def _run(operation, strategy, *, site: ServerProcess, headers: dict[str, str], statuses: Counter) -> None:
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        phases=[Phase.explicit, Phase.generate],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case) -> None:
        response = case.call_and_validate(
            base_url=site.url, headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT_SECONDS, allow_redirects=False
        )
        statuses[response.status_code] += 1

    run()


def test_every_operation_answers_as_the_schema_says(site):
    seeded = Seeded(site)
    schema = schemathesis.openapi.from_url(f"{site.url}/api/schema/")
    failures: list[str] = []
    started = time.monotonic()
    operations = 0
    statuses: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        key = seeded.headers if operation.security else {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for what, path_parameters, extra_headers in seeded.variants(operation.path):
                try:
                    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                    _run(operation, strategy, site=site, headers={**key, **extra_headers}, statuses=statuses)
                except Unsatisfiable:
                    pass  # nothing of this operation can be made invalid (negative mode): nothing to send
                except (Exception, BaseExceptionGroup) as error:  # every operation is tried; failures reported together
                    failures.append(f"{operation.label} ({mode.value}, {what}): {error}")
    print(f"{operations} operations, answers by status: {dict(sorted(statuses.items()))}")
    assert operations >= 44
    assert statuses[200] + statuses[201] > 100, "the seeded ids reach the operations' successful answers"
    assert not failures, "\n\n".join(failures)
    if EXAMPLES_PER_MODE <= 8:
        assert time.monotonic() - started < 180
