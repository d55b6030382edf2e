import uuid

from django.db import models

from apertur.crypto import EncryptedJSONField


class DestinationQuerySet(models.QuerySet):
    def alive(self) -> "DestinationQuerySet":
        return self.filter(deleted_at__isnull=True)


class Destination(models.Model):
    """Where images go. `config` holds the non-secret settings; `secrets` is encrypted at rest.

    Deleting keeps the row (deleted_at) so past deliveries keep their history.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="destinations")
    # One of destinations.backends.BACKENDS, checked by the services: no choices, so a new type needs no migration.
    type = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    config = models.JSONField(default=dict)
    secrets = EncryptedJSONField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    needs_reconnect = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DestinationQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"
