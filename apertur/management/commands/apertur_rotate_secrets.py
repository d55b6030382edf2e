from django.core.management.base import BaseCommand
from django.db import transaction

from destinations.models import Destination
from projects.models import ApiKey
from sessions_app.models import UploadEncryptionKey


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of APERTUR_SECRET_KEYS (after prepending a new key)."

    def handle(self, *args, **options) -> None:
        # Loading decrypts with any configured key; saving encrypts with the first one.
        with transaction.atomic():
            destinations = 0
            for destination in Destination.objects.exclude(secrets=None).only("pk", "secrets"):
                Destination.objects.filter(pk=destination.pk).update(secrets=destination.secrets)
                destinations += 1
            keys = 0
            for api_key in ApiKey.objects.exclude(signing_secret=None).only("pk", "signing_secret"):
                ApiKey.objects.filter(pk=api_key.pk).update(signing_secret=api_key.signing_secret)
                keys += 1
            key_pairs = 0
            for key_pair in UploadEncryptionKey.objects.only("pk", "private_key_pem"):
                UploadEncryptionKey.objects.filter(pk=key_pair.pk).update(private_key_pem=key_pair.private_key_pem)
                key_pairs += 1
        self.stdout.write(
            f"Re-encrypted the secrets of {destinations} destinations, {keys} API keys "
            f"and {key_pairs} upload-encryption key pairs."
        )
