from django.conf import settings
from django.core.management.base import BaseCommand

from sessions_app.encryption import encryption_key_rotate


class Command(BaseCommand):
    help = "Make a new RSA key pair for encrypted uploads; the old one keeps decrypting for the grace period."

    def handle(self, *args, **options) -> None:
        key = encryption_key_rotate()
        self.stdout.write(
            f"New upload-encryption key {key.pk} is current; the previous one decrypts for "
            f"{settings.APERTUR_ENCRYPTION_KEY_GRACE_HOURS} more hours."
        )
