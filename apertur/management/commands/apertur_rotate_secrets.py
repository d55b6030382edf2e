"""Re-encrypt every stored secret with the first of APERTUR_SECRET_KEYS (docs/configuration.md): every column of
every model that is an EncryptedJSONField, found by looking, so a new kind of secret cannot be forgotten here, and
the two-factor secrets inside allauth's authenticators."""

from allauth.mfa.models import Authenticator
from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import models, transaction

from apertur.accounts import ENCRYPTED_AUTHENTICATOR_FIELDS
from apertur.crypto import EncryptedJSONField, decrypt_text, encrypt_text


def encrypted_columns() -> list[tuple[type[models.Model], str]]:
    """(model, field name) of every EncryptedJSONField of every installed model."""
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedJSONField)
    ]


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of APERTUR_SECRET_KEYS (after prepending a new key)."

    def handle(self, *args, **options) -> None:
        counts: dict[str, int] = {}
        # Loading decrypts with any configured key; saving encrypts with the first one. One short transaction per
        # row, the row locked FOR NO KEY UPDATE (only a non-key column changes): a change made meanwhile (a
        # refreshed token) is neither lost nor left under the old key, and uploads, which hold their project's
        # destinations and webhooks FOR KEY SHARE, neither wait for the rotation nor deadlock with it.
        for model, name in encrypted_columns():
            for pk in model.objects.exclude(**{name: None}).values_list("pk", flat=True):
                with transaction.atomic():
                    value = (
                        model.objects.select_for_update(no_key=True).filter(pk=pk).values_list(name, flat=True).first()
                    )
                    if value is None:
                        continue  # deleted, or emptied, meanwhile
                    model.objects.filter(pk=pk).update(**{name: value})
                counts[model._meta.verbose_name_plural] = counts.get(model._meta.verbose_name_plural, 0) + 1
        with transaction.atomic():
            # Locked: a recovery code used meanwhile rewrites the whole `data`, and one of the two writes would be lost.
            authenticators = Authenticator.objects.select_for_update().filter(
                type__in=list(ENCRYPTED_AUTHENTICATOR_FIELDS)
            )
            for authenticator in authenticators:
                data = dict(authenticator.data)
                for field in ENCRYPTED_AUTHENTICATOR_FIELDS[authenticator.type]:
                    if field in data:
                        data[field] = encrypt_text(decrypt_text(data[field]))
                Authenticator.objects.filter(pk=authenticator.pk).update(data=data)
                counts["two-factor authenticators"] = counts.get("two-factor authenticators", 0) + 1
        done = ", ".join(f"{count} {name}" for name, count in sorted(counts.items())) or "nothing"
        self.stdout.write(f"Re-encrypted the secrets of: {done}.")
