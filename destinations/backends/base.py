"""The destination contract every backend module implements.

A backend makes exactly one delivery attempt and either returns a DeliveryReceipt or raises
DeliveryError; retries, scheduling and bookkeeping belong to the delivery service.
"""

import hashlib
import io
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, ClassVar

from PIL import Image as PillowImage
from pydantic import BaseModel, ConfigDict, SecretStr


class BackendConfig(BaseModel):
    """Strict per-type config: unknown keys are errors; secrets are `SecretStr` fields."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=False)

    @classmethod
    def secret_field_names(cls) -> frozenset[str]:
        return frozenset(
            name
            for name, info in cls.model_fields.items()
            if info.annotation is SecretStr or info.annotation == SecretStr | None
        )

    def secret_value(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""


@dataclass(frozen=True)
class StagedImage:
    """What a backend may know about an image; bytes come from `open()` as a stream, never whole."""

    image_id: str
    session_id: str
    project_id: str
    index: int
    filename: str
    extension: str
    mime_type: str
    size_bytes: int
    sha256: str
    source: str
    tags: list[str]
    uploaded_at: datetime
    delivery_id: str
    attempt: int
    opener: Callable[[], IO[bytes]] = field(repr=False)

    def open(self) -> IO[bytes]:
        return self.opener()


@dataclass(frozen=True)
class DeliveryReceipt:
    remote_reference: str
    http_status: int | None = None


class DeliveryError(Exception):
    """One failed attempt. `permanent`: retrying cannot help; `needs_reconnect`: credentials were refused."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        needs_reconnect: bool = False,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.needs_reconnect = needs_reconnect
        self.http_status = http_status


@dataclass(frozen=True)
class CheckResult:
    success: bool
    message: str
    error: str | None = None
    http_status: int | None = None
    needs_reconnect: bool = False


class DestinationBackend(ABC):
    """Base for one destination type. Subclasses set `type`, `Config`, and implement `deliver`."""

    type: ClassVar[str]
    Config: ClassVar[type[BackendConfig]]
    # Config field holding the object-store path template (None: the type uses a folder instead).
    path_template_field: ClassVar[str | None] = None

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @classmethod
    def from_stored(cls, config: dict[str, Any], secrets: dict[str, Any] | None) -> "DestinationBackend":
        return cls(cls.Config.model_validate({**config, **(secrets or {})}))

    @abstractmethod
    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        """Make one attempt to put `image` at `path` (already rendered and normalised).

        Must overwrite what is at `path` (retries are idempotent), stream the bytes, and raise
        DeliveryError for every failure the destination reports.
        """

    def check(self) -> CheckResult:
        """Deliver one small generated PNG once (the dashboard's and API's "Test" button)."""
        image = sample_image()
        try:
            receipt = self.deliver(image, f"apertur-test/{image.image_id}.png")
        except DeliveryError as error:
            return CheckResult(
                False,
                "Test delivery failed.",
                error=error.message,
                http_status=error.http_status,
                needs_reconnect=error.needs_reconnect,
            )
        return CheckResult(
            True, f"Test image delivered to {receipt.remote_reference}.", http_status=receipt.http_status
        )


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    PillowImage.new("RGB", (8, 8), (32, 128, 224)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_image() -> StagedImage:
    data = _png_bytes()
    test_id = f"test_{uuid.uuid4().hex[:12]}"
    return StagedImage(
        image_id=f"img_{test_id}",
        session_id=f"sess_{test_id}",
        project_id="test",
        index=0,
        filename="apertur-test.png",
        extension="png",
        mime_type="image/png",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        source="test",
        tags=[],
        uploaded_at=datetime.now(UTC),
        delivery_id=str(uuid.uuid4()),
        attempt=1,
        opener=lambda: io.BytesIO(data),
    )
