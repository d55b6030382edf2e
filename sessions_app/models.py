from django.conf import settings
from django.db import models
from django.utils import timezone

from apertur.crypto import EncryptedJSONField
from apertur.ids import new_image_id, new_session_id


class UploadSession(models.Model):
    """One link/QR a phone user uploads into. `status` is stored for listing but always
    recomputed by `sessions_app.status.session_status_refresh` from the facts below."""

    class Status(models.TextChoices):
        PENDING = "pending"
        UPLOADING = "uploading"
        COMPLETED = "completed"
        FAILED = "failed"
        EXPIRED = "expired"

    class CloseReason(models.TextChoices):
        COMPLETED = "completed"  # the phone user pressed Done
        FULL = "full"  # max_images reached
        EXPIRED = "expired"  # expires_at passed while open

    id = models.CharField(primary_key=True, max_length=40, default=new_session_id, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="sessions")
    api_key = models.ForeignKey(
        "projects.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    env = models.CharField(max_length=4, default="live")
    label = models.CharField(max_length=200, blank=True, default="")
    destinations = models.ManyToManyField("destinations.Destination", blank=True, related_name="sessions")
    long_polling = models.BooleanField(default=False)
    tags = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField()
    max_images = models.PositiveIntegerField()
    allowed_mime_types = models.JSONField()
    max_image_dimension = models.PositiveIntegerField(null=True, blank=True)
    max_image_size_mb = models.PositiveIntegerField(null=True, blank=True)
    password_hash = models.CharField(max_length=200, blank=True, default="")
    images_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=10, choices=CloseReason.choices, blank=True, default="")
    # When the session ended: closed with nothing left to deliver (None while not; a manual retry reopens it).
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-created_at"]),
            models.Index(fields=["closed_at", "expires_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def password_protected(self) -> bool:
        return bool(self.password_hash)

    @property
    def effective_max_image_size_mb(self) -> int:
        return self.max_image_size_mb or settings.APERTUR_MAX_IMAGE_SIZE_MB


class Image(models.Model):
    """An accepted image; the original bytes live in staging storage under `staged_name`."""

    id = models.CharField(primary_key=True, max_length=40, default=new_image_id, editable=False)
    session = models.ForeignKey(UploadSession, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField()
    filename = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=32)
    extension = models.CharField(max_length=8)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=64, default="camera")
    is_encrypted = models.BooleanField(default=False)
    staged_name = models.CharField(max_length=300)
    staged_deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Pull delivery (docs/api.md "Pull delivery"), for images of long-polling sessions: acknowledged by the
    # client, and handed to a held poll until this moment (the database's clock; past it the image is offered
    # again).
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    poll_leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "index"], name="one_image_per_index")]
        indexes = [models.Index(fields=["staged_deleted_at", "created_at"])]
        ordering = ["session", "index"]

    def __str__(self) -> str:
        return self.id


class UploadEncryptionKey(models.Model):
    """The server's RSA key pair for encrypted uploads (docs/api.md "Encrypted uploads"). One is current; retired
    ones keep decrypting for a grace period so uploads encrypted just before a rotation still succeed."""

    public_key_pem = models.TextField()
    # The private key is a secret: encrypted at rest like every other one.
    private_key_pem = EncryptedJSONField()
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_current"], condition=models.Q(is_current=True), name="one_current_key")
        ]

    def __str__(self) -> str:
        return f"upload encryption key {self.pk} ({'current' if self.is_current else 'retired'})"
