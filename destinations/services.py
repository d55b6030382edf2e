"""Every state change of destinations (docs/api.md "Destinations"). Config is validated strictly by the type's
backend."""

import copy
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError as ConfigValidationError

from apertur.deadlines import Deadline
from apertur.errors import AppError
from delivery import services as delivery_services
from destinations.attempts import (
    DestinationSecretsStore,
    backend_for,
    deadline_message,
    destination_flag_needs_reconnect,
    destination_record_outcome,
)
from destinations.backends import BACKENDS, backend_class
from destinations.backends.base import (
    MASK,
    BackendConfig,
    CheckResult,
    merge_secrets,
)
from destinations.models import Destination
from projects.models import Project


def mask_secret(value: str) -> str:
    return f"{MASK}{value[-4:]}" if len(value) >= 12 else MASK


def _refuse_server_only_fields(config_model: type[BackendConfig], config: dict[str, Any]) -> None:
    refused = sorted(config_model.server_only_field_names() & set(config))
    if refused:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"config.{refused[0]}: set by connecting the destination, not through the API.",
            fields={f"config.{name}": ["set by connecting the destination, not through the API"] for name in refused},
        )


def _masked(secrets: dict[str, Any]) -> dict[str, Any]:
    """Secret strings become `••••<last 4>`; other secret values (token expiries …) are left out."""
    masked: dict[str, Any] = {}
    for key, value in secrets.items():
        if isinstance(value, dict):
            masked[key] = _masked(value)
        elif isinstance(value, str):
            masked[key] = mask_secret(value)
    return masked


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
    config_model = backend_class(kind).Config
    try:
        config_model.model_validate(full_config)
    except ConfigValidationError as error:
        raise _config_error(error) from error
    return config_model.split_secrets(full_config)


def destination_create(*, project: Project, type: str, name: str, config: dict[str, Any]) -> Destination:
    if type not in BACKENDS:
        raise AppError(
            400,
            "VALIDATION_ERROR",
            f"Unknown destination type {type!r}.",
            fields={"type": [f"{type!r} is not a destination type; one of: {', '.join(sorted(BACKENDS))}"]},
        )
    _refuse_server_only_fields(backend_class(type).Config, config)
    stored_config, secrets = _validated(type, config)
    return Destination.objects.create(project=project, type=type, name=name, config=stored_config, secrets=secrets)


def destination_connect(*, project: Project, type: str, name: str, token: dict[str, Any]) -> Destination:
    """A destination connected by OAuth, created by the connect flow (destinations/oauth_connect.py) with the
    tokens it obtained: the type's defaults for everything else, which the API can edit afterwards."""
    stored_config, secrets = _validated(type, {"token": token})
    return Destination.objects.create(project=project, type=type, name=name, config=stored_config, secrets=secrets)


def destination_reconnect(*, destination: Destination, token: dict[str, Any]) -> Destination:
    """New tokens from the connect flow replace the old ones and clear the reconnect flag; deliveries waiting on
    their schedule then succeed at their next attempt.

    Written through the secrets lock the workers' token refreshes hold: a refresh in flight finishes first, and
    these tokens are not overwritten by its result."""
    with DestinationSecretsStore(str(destination.pk)).locked() as stored:
        stored["token"] = token
        # Under the lock, like the disconnect's flag: the two cannot interleave into tokens of one and the flag of
        # the other.
        Destination.objects.filter(pk=destination.pk).update(
            needs_reconnect=False, last_error="", updated_at=timezone.now()
        )
    destination.refresh_from_db()
    return destination


def destination_disconnect(*, destination: Destination) -> dict[str, Any]:
    """Forget an OAuth destination's tokens and flag it as needing a reconnect. Returns the secrets as they were
    stored at that moment, read under the secrets lock (a refresh in flight finishes first): the grant to revoke
    is the one stored now, not the one the caller loaded earlier, which a rotating provider may have replaced."""
    with DestinationSecretsStore(str(destination.pk)).locked() as stored:
        removed = copy.deepcopy(stored)
        stored.pop("token", None)
        message = "Disconnected: connect the destination again to resume deliveries."
        with transaction.atomic():
            destination_flag_needs_reconnect(destination_id=str(destination.pk), error=message)
            Destination.objects.filter(pk=destination.pk).update(last_error=message, updated_at=timezone.now())
    return removed


def destination_update(
    *,
    destination: Destination,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    is_active: bool | None = None,
) -> Destination:
    """PATCH: the config is merged into what is stored as a JSON Merge Patch (`BackendConfig.merge_patch`); an
    omitted (or echoed, masked) secret keeps its value.

    Only the fields the PATCH names are written, on the locked row, so a concurrent delete or a worker's
    `lastError`/`needsReconnect` is never overwritten with what the request loaded."""
    with transaction.atomic():
        destination = Destination.objects.select_for_update().get(pk=destination.pk)
        if destination.deleted_at is not None:
            raise AppError(404, "NOT_FOUND", "Destination not found.")
        changed = ["updated_at"]
        if config is not None:
            config_model = backend_class(destination.type).Config
            _refuse_server_only_fields(config_model, config)
            stored = merge_secrets(destination.config, destination.secrets)
            destination.config, destination.secrets = _validated(
                destination.type, config_model.merge_patch(stored, config)
            )
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


def destination_test(*, destination: Destination) -> CheckResult:
    """Deliver one generated image synchronously, once, no retries, within the attempt deadline; the outcome is
    shown on the destination."""
    with Deadline(settings.APERTUR_DELIVERY_ATTEMPT_TIMEOUT) as deadline:
        try:
            result = backend_for(destination, deadline=deadline).check()
        except ConfigValidationError as error:
            raise _config_error(error) from error
    if deadline.expired and not result.success:
        result = replace(result, error=deadline_message(deadline))
    destination_record_outcome(
        destination_id=str(destination.pk),
        error=None if result.success else (result.error or result.message),
        needs_reconnect=result.needs_reconnect,
    )
    return result


def public_config(destination: Destination) -> dict[str, Any]:
    """The config as the API shows it: secrets masked, never returned.

    A plain field an attempt learnt and wrote back with the secrets (`save_secrets`: an SFTP host key's
    fingerprint, pinned on first connection) is shown as it is; the next API write of the config moves it into the
    plain config."""
    learnt, secrets = backend_class(destination.type).Config.split_secrets(destination.secrets or {})
    return merge_secrets(merge_secrets(destination.config, learnt), _masked(secrets))
