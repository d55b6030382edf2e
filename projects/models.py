import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from apertur.crypto import EncryptedJSONField

ALL_MIME_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic"]


def key_digest(plain_key: str) -> str:
    """How an API key is stored: its SHA-256, never the key itself."""
    return hashlib.sha256(plain_key.encode()).hexdigest()


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    default_max_images = models.PositiveIntegerField(default=10)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    # The roles that may change a project's destinations, keys and webhooks; members only look.
    MANAGING_ROLES = (Role.OWNER, Role.ADMIN)
    # Every role: sessions are every member's work (making, closing, retrying, pulling; docs/api.md "Dashboard access").
    ALL_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class ApiKey(models.Model):
    """An API key; only the SHA-256 digest of the secret is stored."""

    class Env(models.TextChoices):
        LIVE = "live"
        TEST = "test"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=200, blank=True)
    env = models.CharField(max_length=4, choices=Env.choices, default=Env.LIVE)
    prefix = models.CharField(max_length=14)
    digest = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    max_images = models.PositiveIntegerField(null=True, blank=True)
    allowed_mime_types = models.JSONField(null=True, blank=True)
    max_image_dimension = models.PositiveIntegerField(null=True, blank=True)
    long_polling_enabled = models.BooleanField(default=False)
    default_destinations = models.ManyToManyField(
        "destinations.Destination", blank=True, related_name="default_for_keys"
    )
    allowed_ips = models.JSONField(default=list, blank=True)
    allowed_domains = models.JSONField(default=list, blank=True)
    # Request signing needs the secret itself (HMAC), so it is encrypted rather than hashed.
    signing_secret = EncryptedJSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.label or 'unlabelled'})"


class Invitation(models.Model):
    """An invitation by email to join a project with a role; only the SHA-256 digest of its link's token is stored.

    One invitation per project and address waits at a time (a new one replaces it); accepting one consumes it, and
    the row stays, so a used link is told apart from an unknown one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                "project",
                condition=models.Q(accepted_at__isnull=True),
                name="one_pending_invitation_per_address",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.project} ({self.role})"
