import uuid

from django.db import models

from apertur.crypto import EncryptedJSONField


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


class EventWebhook(models.Model):
    """A project's subscription to its events (docs/api.md "Event webhooks"). The secret signs every request."""

    class SignatureMethod(models.TextChoices):
        HMAC_SHA256 = "hmac_sha256"
        SVIX = "svix"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="event_webhooks")
    url = models.TextField()
    # A hex string whatever the method: svix signs with its bytes, hmac_sha256 with the text itself.
    secret = EncryptedJSONField()
    signature_method = models.CharField(
        max_length=16, choices=SignatureMethod.choices, default=SignatureMethod.HMAC_SHA256
    )
    topics = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    max_retries = models.PositiveIntegerField()
    retry_intervals = models.JSONField(default=list)
    disable_after_failures = models.PositiveIntegerField()
    consecutive_failures = models.PositiveIntegerField(default=0)
    custom_headers = models.JSONField(default=dict)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "is_active"])]

    def __str__(self) -> str:
        return f"event webhook {self.pk} → {self.url}"


class EventLog(models.Model):
    """One project event, written in the transaction of the change it reports; its deliveries are its outbox."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="event_log")
    topic = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["created_at"])]  # the retention purge, every sweep

    def __str__(self) -> str:
        return f"{self.topic} at {self.created_at}"


class EventDelivery(models.Model):
    """One event going to one event webhook, with the outcome of its latest attempt.

    `retrying` covers every state before the final one: waiting for the first attempt, running one, or waiting for
    the next. Deliveries that share an `ordering_key` (the session) go out one at a time, oldest first."""

    class Status(models.TextChoices):
        RETRYING = "retrying"
        SENT = "sent"
        FAILED = "failed"

    TERMINAL = (Status.SENT, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(EventWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(EventLog, on_delete=models.CASCADE, related_name="deliveries")
    ordering_key = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RETRYING)
    attempts = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Put back because its webhook (or project) had as many attempts in flight as allowed: the next attempt of
    # either to end hands its slot to the one waiting longest, as image deliveries do.
    waiting_for_slot = models.BooleanField(default=False)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["webhook", "event"], name="one_delivery_per_webhook_event")]
        indexes = [
            models.Index(fields=["status", "next_retry_at"]),
            models.Index(fields=["status", "lease_expires_at"]),
            models.Index(fields=["webhook", "ordering_key", "status", "created_at"]),
            models.Index(fields=["webhook", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.webhook_id} ({self.status})"
