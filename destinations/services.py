"""Every state change of destinations (SPEC §6.1). Config is validated strictly by the type's backend."""

from typing import Any

from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError as ConfigValidationError

from apertur.errors import AppError
from delivery import services as delivery_services
from destinations.backends import BACKENDS, backend_class
from destinations.backends.base import CheckResult, DestinationBackend
from destinations.models import Destination
from projects.models import Project

MASK = "••••"


def mask_secret(value: str) -> str:
    return f"{MASK}{value[-4:]}" if len(value) >= 12 else MASK


def _is_mask(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK)


def _problem_message(problem: dict[str, Any]) -> str:
    if problem["type"] == "extra_forbidden":
        return "unknown field"
    if problem["type"] == "value_error":
        return str(problem["ctx"]["error"])  # our validators' own sentence, without pydantic's "Value error, "
    return problem["msg"]


def _config_error(error: ConfigValidationError) -> AppError:
    fields: dict[str, list[str]] = {}
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        message = _problem_message(problem)
        fields.setdefault(f"config.{location}" if location else "config", []).append(message)
    name, messages = next(iter(fields.items()))
    return AppError(400, "VALIDATION_ERROR", f"{name}: {messages[0]}", fields=fields)


def _validated(kind: str, full_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate with the type's Config; split what the user sent into stored config and secrets."""
    backend = backend_class(kind)
    try:
        backend.Config.model_validate(full_config)
    except ConfigValidationError as error:
        raise _config_error(error) from error
    secret_names = backend.Config.secret_field_names()
    config = {key: value for key, value in full_config.items() if key not in secret_names}
    secrets = {key: value for key, value in full_config.items() if key in secret_names and value is not None}
    return config, secrets


def destination_create(*, project: Project, type: str, name: str, config: dict[str, Any]) -> Destination:
    if type not in BACKENDS:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"Unknown destination type {type!r}.",
            fields={"type": [f"one of: {', '.join(sorted(BACKENDS))}"]},
        )
    stored_config, secrets = _validated(type, config)
    return Destination.objects.create(project=project, type=type, name=name, config=stored_config, secrets=secrets)


def destination_update(
    *,
    destination: Destination,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    is_active: bool | None = None,
) -> Destination:
    """PATCH: config merges into what is stored; an omitted (or echoed, masked) secret keeps its value.

    Only the fields the PATCH names are written, on the locked row, so a concurrent delete or a worker's
    `lastError`/`needsReconnect` is never overwritten with what the request loaded."""
    with transaction.atomic():
        destination = Destination.objects.select_for_update().get(pk=destination.pk)
        if destination.deleted_at is not None:
            raise AppError(404, "NOT_FOUND", "Destination not found.")
        changed = ["updated_at"]
        if config is not None:
            secret_names = backend_class(destination.type).Config.secret_field_names()
            merged = {**destination.config, **(destination.secrets or {})}
            merged.update(
                {key: value for key, value in config.items() if not (key in secret_names and _is_mask(value))}
            )
            destination.config, destination.secrets = _validated(destination.type, merged)
            changed += ["config", "secrets"]
        if name is not None:
            destination.name = name
            changed.append("name")
        if is_active is not None:
            destination.is_active = is_active
            changed.append("is_active")
        destination.save(update_fields=changed)
    return destination


def destination_delete(*, destination: Destination) -> None:
    """Soft delete: past deliveries keep their history; pending ones fail with "destination deleted"."""
    with transaction.atomic():
        # Deliveries first, then the destination: the lock order the delivery engine uses.
        delivery_services.deliveries_fail_for_deleted_destination(destination=destination)
        Destination.objects.filter(pk=destination.pk).update(
            deleted_at=timezone.now(), is_active=False, updated_at=timezone.now()
        )


def backend_for(destination: Destination) -> DestinationBackend:
    try:
        return backend_class(destination.type).from_stored(destination.config, destination.secrets)
    except ConfigValidationError as error:
        raise _config_error(error) from error


def destination_test(*, destination: Destination) -> CheckResult:
    """Deliver one generated image synchronously, once, no retries; the outcome is shown on the destination."""
    result = backend_for(destination).check()
    if result.success:
        Destination.objects.filter(pk=destination.pk).update(last_error="", needs_reconnect=False)
    else:
        changes = {"last_error": (result.error or result.message)[:1000]}
        if result.needs_reconnect:
            changes["needs_reconnect"] = True
        Destination.objects.filter(pk=destination.pk).update(**changes)
    return result


def public_config(destination: Destination) -> dict[str, Any]:
    """The config as the API shows it: secrets masked, never returned."""
    masked = {key: mask_secret(str(value)) for key, value in (destination.secrets or {}).items()}
    return {**destination.config, **masked}
