import uuid

from django.db import models


class Delivery(models.Model):
    """One image going to one destination. The row is its own outbox entry: the sweeper
    re-sends every due row, so the broker only ever has to ring the doorbell."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERING = "delivering"
        DELIVERED = "delivered"
        FAILED = "failed"

    TERMINAL = (Status.DELIVERED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey("sessions_app.Image", on_delete=models.CASCADE, related_name="deliveries")
    destination = models.ForeignKey("destinations.Destination", on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Put back because its destination or project had as many attempts in flight as allowed; the next attempt
    # of that destination (or project) to finish hands its slot over at once instead of letting it wait.
    waiting_for_slot = models.BooleanField(default=False)
    last_error = models.TextField(blank=True, default="")
    remote_reference = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "destination"], name="one_delivery_per_image_destination")
        ]
        indexes = [
            models.Index(fields=["status", "next_retry_at"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.image_id} → {self.destination_id} ({self.status})"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        RUNNING = "running"
        DELIVERED = "delivered"
        FAILED = "failed"
        LOST = "lost"  # the worker died mid-attempt; found by the sweeper after the lease expired

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "started_at"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.outcome}"
