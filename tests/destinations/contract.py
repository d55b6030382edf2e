"""The destination contract-test mixin: the same cases run against every backend.

A backend's test class inherits `BackendContract` and defines a `target` fixture returning a
`ContractTarget` bound to a real local server. Where a case cannot apply to a server, the target
skips it with the reason.
"""

import hashlib
import io
import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.db import connection

from apertur import http as outbound
from destinations.attempts import backend_for
from destinations.backends.base import DeliveryError, DestinationBackend, StagedImage
from destinations.models import Destination
from destinations.paths import DEFAULT_PATH_TEMPLATE, image_path
from tests.factories import make_persona, noisy_jpeg


def make_staged_image(data: bytes, **overrides) -> StagedImage:
    """A staged JPEG as the delivery engine hands it to a backend: metadata plus a stream opener."""
    values = {
        "image_id": "img_01JCONTRACT0000000000000001",
        "session_id": "sess_01JCONTRACT00000000000001",
        "project_id": "5f0c8a4e-2d7b-4c3e-9a1f-0e6b8d2c4a11",
        "index": 3,
        "filename": "photo.jpg",
        "extension": "jpg",
        "mime_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": "camera",
        "tags": ["order:A-17", "team"],
        "uploaded_at": datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC),
        "delivery_id": "0d3f6a52-8c1e-4b7a-9f20-3c5d7e9a1b24",
        "attempt": 1,
        "opener": lambda: io.BytesIO(data),
    }
    values.update(overrides)
    return StagedImage(**values)


def rendered_path(image: StagedImage, template: str = DEFAULT_PATH_TEMPLATE) -> str:
    return image_path(template, image)


class ContractTarget(ABC):
    """A backend type bound to one real local server; what the contract needs to know about it."""

    @abstractmethod
    def backend(self) -> DestinationBackend:
        """A correctly configured backend."""

    @abstractmethod
    def failing_backend(self) -> DestinationBackend:
        """A backend whose server reports a failure (an HTTP 500, a missing bucket …)."""

    @abstractmethod
    def backend_with_refused_credentials(self) -> DestinationBackend:
        """A backend whose credentials the server refuses."""

    @abstractmethod
    def delivered(self) -> dict[str, bytes]:
        """What the server holds now: remote identity (object key, delivery id …) → image bytes."""

    @abstractmethod
    def location(self, image: StagedImage, path: str) -> str:
        """The remote identity `deliver(image, path)` must write to."""

    def forget_connections(self) -> None:
        """Drop pooled connections, so the next attempt connects (and passes the outbound gate) afresh."""
        return None  # most targets pool nothing across backends


def stored_destination(backend: DestinationBackend, project) -> Destination:
    """A destination row holding `backend`'s config, as the API or the connect flow would have stored it."""
    config, secrets = backend.config.stored_form()
    return Destination.objects.create(
        project=project, type=backend.type, name="contract", config=config, secrets=secrets
    )


class StoredDestinationContract:
    """The attempt context on a stored destination: what the delivery engine hands every backend."""

    # Where in the stored secrets the write-back case appends (a string at that path).
    rewritable_secret: tuple[str, ...] = ()

    def test_a_backend_built_for_a_stored_destination_delivers_within_its_context(self, target, owner):
        destination = stored_destination(target.backend(), owner.project)
        backend = backend_for(destination)
        image = make_staged_image(noisy_jpeg((320, 240)))
        path = backend.remote_path(image)

        backend.deliver(image, path)

        assert backend.context.destination_id == str(destination.pk)
        assert target.delivered() == {target.location(image, path): image.open().read()}

    def test_secrets_written_back_by_concurrent_attempts_are_all_kept(self, target, transactional_db):
        destination = stored_destination(target.backend(), make_persona("writer").project)
        path = self.rewritable_secret or (sorted(target.backend().Config.secret_field_names())[0],)
        writers = 4
        all_started = threading.Barrier(writers)

        def write_back(number: int) -> None:
            try:
                context = backend_for(Destination.objects.get(pk=destination.pk)).context
                all_started.wait(5)
                with context.secrets.locked() as stored:
                    holder = stored
                    for key in path[:-1]:
                        holder = holder[key]
                    holder[path[-1]] = f"{holder[path[-1]]}+{number}"
            finally:
                connection.close()  # this thread's own connection

        threads = [threading.Thread(target=write_back, args=(number,)) for number in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        value = Destination.objects.get(pk=destination.pk).secrets
        for key in path:
            value = value[key]
        assert sorted(value.split("+")[1:]) == [str(number) for number in range(writers)]


class UserHostContract:
    """Types whose host a user types in: it passes the outbound gate (docs/api.md "Host safety")."""

    def test_a_host_that_is_a_private_address_is_refused_before_anything_is_sent(self, target, settings):
        settings.APERTUR_ALLOWED_PRIVATE_NETWORKS = []
        outbound._allowed_private_networks.cache_clear()
        target.forget_connections()  # the gate checks at connect time; a kept-alive socket was checked already
        image = make_staged_image(noisy_jpeg((160, 120)))

        with pytest.raises(DeliveryError) as raised:
            target.backend().deliver(image, rendered_path(image))

        assert raised.value.permanent is True
        assert "refused host" in raised.value.message
        assert target.delivered() == {}


class BackendContract(StoredDestinationContract):
    """Cases every destination backend passes (docs/destinations.md: one contract mixin for all)."""

    def test_delivers_the_staged_bytes_to_the_rendered_path(self, target: ContractTarget):
        data = noisy_jpeg()
        image = make_staged_image(data)
        path = rendered_path(image)

        receipt = target.backend().deliver(image, path)

        delivered = target.delivered()
        assert list(delivered) == [target.location(image, path)]
        assert delivered[target.location(image, path)] == data
        assert hashlib.sha256(delivered[target.location(image, path)]).hexdigest() == image.sha256
        assert receipt.remote_reference

    def test_overwrites_on_retry_instead_of_duplicating(self, target: ContractTarget):
        first_bytes, retried_bytes = noisy_jpeg((320, 240)), noisy_jpeg((320, 240))
        image = make_staged_image(first_bytes)
        path = rendered_path(image)
        backend = target.backend()

        backend.deliver(image, path)
        retry = replace(
            image,
            attempt=2,
            opener=lambda: io.BytesIO(retried_bytes),
            size_bytes=len(retried_bytes),
            sha256=hashlib.sha256(retried_bytes).hexdigest(),
        )
        backend.deliver(retry, path)

        assert target.delivered() == {target.location(image, path): retried_bytes}

    def test_reports_a_failure_of_the_destination_as_delivery_error(self, target: ContractTarget):
        image = make_staged_image(noisy_jpeg((160, 120)))

        with pytest.raises(DeliveryError) as raised:
            target.failing_backend().deliver(image, rendered_path(image))

        assert raised.value.message
        assert raised.value.needs_reconnect is False
        assert target.delivered() == {}

    def test_reports_refused_credentials_as_needs_reconnect(self, target: ContractTarget):
        backend = target.backend_with_refused_credentials()
        image = make_staged_image(noisy_jpeg((160, 120)))

        with pytest.raises(DeliveryError) as raised:
            backend.deliver(image, rendered_path(image))

        assert raised.value.needs_reconnect is True
        # docs/api.md "Destination types": deliveries keep retrying on schedule and succeed once the user fixes
        # the credentials.
        assert raised.value.permanent is False
        assert target.delivered() == {}

    def test_check_delivers_a_test_image_and_reports_success(self, target: ContractTarget):
        result = target.backend().check()

        assert result.success is True, result.error
        assert result.error is None
        [test_image] = target.delivered().values()
        assert test_image.startswith(b"\x89PNG\r\n\x1a\n")

    def test_check_reports_failure_with_an_error_for_a_bad_config(self, target: ContractTarget):
        result = target.failing_backend().check()

        assert result.success is False
        assert result.error
        assert target.delivered() == {}
