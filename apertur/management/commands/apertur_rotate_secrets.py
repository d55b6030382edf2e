from allauth.mfa.models import Authenticator
from django.core.management.base import BaseCommand
from django.db import transaction

from apertur.accounts import ENCRYPTED_AUTHENTICATOR_FIELDS
from apertur.crypto import decrypt_text, encrypt_text
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
            authenticators = 0
            # Locked: a recovery code used meanwhile rewrites the whole `data`, and one of the two writes would be lost.
            authenticators_query = Authenticator.objects.select_for_update().filter(
                type__in=list(ENCRYPTED_AUTHENTICATOR_FIELDS)
            )
            for authenticator in authenticators_query:
                data = dict(authenticator.data)
                for field in ENCRYPTED_AUTHENTICATOR_FIELDS[authenticator.type]:
                    if field in data:
                        data[field] = encrypt_text(decrypt_text(data[field]))
                Authenticator.objects.filter(pk=authenticator.pk).update(data=data)
                authenticators += 1
        self.stdout.write(
            f"Re-encrypted the secrets of {destinations} destinations, {keys} API keys, "
            f"{key_pairs} upload-encryption key pairs and {authenticators} two-factor authenticators."
        )
