"""The destination contract every backend module implements (docs/destinations.md "The contract").

A backend makes exactly one delivery attempt and either returns a DeliveryReceipt or raises DeliveryError;
retries, scheduling and bookkeeping belong to the delivery service. What an attempt may know and change of its
destination — its id, its secrets (to write back a refreshed token or a pinned host key) and its deadline — comes
in an `AttemptContext`.
"""

import copy
import email.utils
import functools
import hashlib
import io
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Annotated, Any, ClassVar, get_args, get_origin

from PIL import Image as PillowImage
from pydantic import BaseModel, ConfigDict, SecretStr

from apertur.deadlines import Deadline
from destinations.paths import DEFAULT_PATH_TEMPLATE, image_path


class Secret:
    """Marks a config field as secret when its type cannot be SecretStr: `Annotated[OAuthToken | None, Secret()]`.

    Secret fields are stored encrypted apart from the config and never returned by the API. `set_by_api=False`:
    only the server writes it (an OAuth token, from the connect flow and refreshes); the API refuses it."""

    def __init__(self, *, set_by_api: bool = True) -> None:
        self.set_by_api = set_by_api


def _is_secret(annotation: Any, metadata: list[Any]) -> bool:
    if any(isinstance(item, Secret) for item in metadata):
        return True
    if get_origin(annotation) is Annotated:
        return _is_secret(get_args(annotation)[0], list(get_args(annotation)[1:]))
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


class BackendConfig(BaseModel):
    """Strict per-type config: unknown keys are errors; secrets are SecretStr (or `Secret()`-marked) fields, in
    nested models too."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=False)

    @classmethod
    def secret_field_names(cls) -> frozenset[str]:
        """Top-level fields that are wholly secret."""
        return frozenset(name for name, info in cls.model_fields.items() if _is_secret(info.annotation, info.metadata))

    @classmethod
    def split_secrets(cls, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split what a user sent (or what is stored) into the plain config and the secrets, at any depth."""
        return _split(cls, data)

    @classmethod
    def server_only_field_names(cls) -> frozenset[str]:
        """Top-level fields the API may not set (Secret(set_by_api=False))."""
        return frozenset(
            name
            for name, info in cls.model_fields.items()
            if any(isinstance(item, Secret) and not item.set_by_api for item in info.metadata)
        )

    @classmethod
    def merge_patch(cls, stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
        """A PATCH of the config (JSON Merge Patch, RFC 7396): `null` removes a key (its default applies); a nested
        settings object merges key by key; any other value, a dict of headers included, replaces what is stored.
        A secret sent back as its mask (`••••…`) keeps its stored value."""
        return _merge_patch(cls, stored, sent)

    def secret_value(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""

    def stored_form(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, secrets) as a destination row stores them, secrets revealed: for flows that build a config in
        code (an OAuth connection, tests) rather than from what a user sent."""
        return self.split_secrets(_revealed(self.model_dump()))


def _split(model: type[BaseModel], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is not None and _is_secret(info.annotation, info.metadata):
            if value is not None:
                secret[key] = value
            continue
        nested = _nested_model(info.annotation) if info is not None else None
        if nested is not None and isinstance(value, dict):
            inner_plain, inner_secret = _split(nested, value)
            plain[key] = inner_plain
            if inner_secret:
                secret[key] = inner_secret
            continue
        plain[key] = value
    return plain, secret


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)  # URLs and other pydantic scalar types


MASK = "••••"


def _merge_patch(model: type[BaseModel], stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    result = dict(stored)
    for key, value in sent.items():
        info = model.model_fields.get(key)
        nested = _nested_model(info.annotation) if info is not None else None
        if value is None:
            result.pop(key, None)
        elif nested is not None and isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_patch(nested, result[key], value)
        elif not (
            info is not None
            and _is_secret(info.annotation, info.metadata)
            and isinstance(value, str)
            and value.startswith(MASK)
        ):
            result[key] = value
    return result


def merge_secrets(config: dict[str, Any], secrets: dict[str, Any] | None) -> dict[str, Any]:
    """The full config a backend validates: the stored config with the secrets put back where they belong."""
    merged = dict(config)
    for key, value in (secrets or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_secrets(merged[key], value)
        else:
            merged[key] = value
    return merged


def refuse_repeated_header_names(headers: dict[str, str]) -> None:
    """HTTP header names are case-insensitive: `X-A` and `x-a` in one config would send one of them, silently."""
    seen: set[str] = set()
    for name in headers:
        if name.lower() in seen:
            raise ValueError(f"{name} is given twice (header names ignore case)")
        seen.add(name.lower())


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


# The longest wait a destination may ask for: the retry schedule's own longest step (docs/api.md "Delivery").
MAX_RETRY_AFTER_SECONDS = 3600.0


def _bounded_wait(seconds: object) -> float | None:
    try:
        seconds = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None when it is
    absent or neither. DeliveryError bounds what it returns."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


class DeliveryError(Exception):
    """One failed attempt. `permanent`: retrying cannot help; `needs_reconnect`: credentials were refused;
    `retry_after`: seconds the destination asked us to wait (a rate limit's Retry-After) — the next attempt waits
    at least that long. The destination writes it: a value that is not a finite number of seconds is ignored, and a
    larger one is cut to MAX_RETRY_AFTER_SECONDS (else `inf` or 1e300 would overflow the schedule, and 1e9 would
    park the delivery for decades)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        needs_reconnect: bool = False,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.needs_reconnect = needs_reconnect
        self.http_status = http_status
        self.retry_after = _bounded_wait(retry_after)


@dataclass(frozen=True)
class CheckResult:
    success: bool
    message: str
    error: str | None = None
    http_status: int | None = None
    needs_reconnect: bool = False


class SecretsStore(ABC):
    """Where an attempt reads and writes back its destination's secrets."""

    @abstractmethod
    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The stored secrets, freshly read and held exclusively: two workers never interleave here. Changes made
        to the yielded dict are saved when the block ends without an error."""


class MemorySecretsStore(SecretsStore):
    """Secrets held in memory: for a backend built outside the delivery engine (tests, scripts)."""

    def __init__(self, secrets: dict[str, Any] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self._lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            working = copy.deepcopy(self.secrets)
            yield working
            self.secrets = working


@dataclass
class AttemptContext:
    """What one attempt knows of its destination beyond the config, and what it may change."""

    destination_id: str | None = None
    secrets: SecretsStore = field(default_factory=MemorySecretsStore)
    deadline: Deadline = field(default_factory=lambda: Deadline(3600))
    # Record something about the destination at once (e.g. needs_reconnect when a token refresh is refused),
    # without waiting for the attempt's outcome.
    record_outcome: Callable[..., None] = field(default=lambda **changes: None)
    # Whether a connection may outlive the attempt, kept by its thread for the next attempt: SFTP's logged-in
    # connection to the same destination, and HTTP connections (apertur/http.py `kept_outbound_session`), see
    # docs/destinations.md "How attempts run". Set by the delivery engine, whose worker threads run attempt after
    # attempt; a destination test or a script closes its own, or its web request thread would leave them behind.
    keep_connections: bool = False

    def save_secrets(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the stored secrets under the destination's lock; returns all secrets after."""
        with self.secrets.locked() as stored:
            stored.update(merge_secrets(stored, changes))
            return dict(stored)


class DestinationBackend(ABC):
    """Base for one destination type. Subclasses set `type`, `Config`, and implement `deliver`."""

    type: ClassVar[str]
    Config: ClassVar[type[BackendConfig]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "deliver" in cls.__dict__:
            cls.deliver = _refused_values_are_permanent(cls.__dict__["deliver"])  # type: ignore[method-assign]

    def __init__(self, config: BackendConfig, context: AttemptContext | None = None) -> None:
        """`context` is given by the delivery engine; without one (a script, a test) secrets live in memory."""
        self.config = config
        self.context = context or AttemptContext(secrets=MemorySecretsStore(config.stored_form()[1]))

    def remote_path(self, image: StagedImage) -> str:
        """Where `image` goes, relative to the destination: deterministic, so a retry overwrites.

        Types with a `pathTemplate` render it; folder-style types render the default template below their folder.
        """
        return image_path(DEFAULT_PATH_TEMPLATE, image)

    @abstractmethod
    def deliver(self, image: StagedImage, path: str) -> DeliveryReceipt:
        """Make one attempt to put `image` at `path` (from `remote_path`, already normalised).

        Must overwrite what is at `path` (retries are idempotent), stream the bytes, stay within
        `self.context.deadline`, and raise DeliveryError for every failure the destination reports.
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


def _refused_values_are_permanent(
    deliver: Callable[["DestinationBackend", StagedImage, str], DeliveryReceipt],
) -> Callable[["DestinationBackend", StagedImage, str], DeliveryReceipt]:
    """A ValueError (UnicodeError among them) that escapes a backend is a library refusing a value from the config
    or the rendered path: the same value fails every retry, so the attempt fails for good with what was refused,
    rather than as an internal error retried until the schedule runs out (docs/destinations.md "The contract")."""

    @functools.wraps(deliver)
    def guarded(self: "DestinationBackend", image: StagedImage, path: str) -> DeliveryReceipt:
        try:
            return deliver(self, image, path)
        except ValueError as error:
            reason = str(error) or type(error).__name__
            for secret in _strings(self.config.stored_form()[1]):
                if len(secret) >= 4:  # a library may quote what it refused: never a secret
                    reason = reason.replace(secret, MASK)
            reason = reason[:300]
            raise DeliveryError(
                f"the {self.type} destination's settings or path cannot be used: {reason}", permanent=True
            ) from error

    return guarded


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


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
