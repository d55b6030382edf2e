"""Operator commands and the health check, as an operator runs them."""

import json
import subprocess
import sys

from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db.models import TextField
from django.db.models.functions import Cast

from apertur import crypto
from destinations.models import Destination
from destinations.services import destination_create
from projects.models import ApiKey
from sessions_app.encryption import encryption_key_ensure
from sessions_app.models import UploadEncryptionKey
from tests.conftest import REPO_ROOT, process_environment
from tests.factories import make_persona


def test_bootstrap_prints_one_json_line_and_reuses_user_and_project(transactional_db):
    def bootstrap() -> dict:
        output = (
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "apertur_bootstrap",
                    "--email",
                    "ops@example.test",
                    "--password",
                    "long-password-1",
                    "--project",
                    "Ops",
                    "--json",
                ],
                cwd=REPO_ROOT,
                env=process_environment(),
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
        assert len(output) == 1
        return json.loads(output[0])

    first, second = bootstrap(), bootstrap()
    assert set(first) == {"user_email", "project_id", "api_key"}
    assert first["project_id"] == second["project_id"]
    assert first["api_key"] != second["api_key"] and first["api_key"].startswith("aptr_live_")
    assert ApiKey.objects.filter(project_id=first["project_id"]).count() == 2


def test_secrets_are_encrypted_at_rest_and_rotation_re_encrypts_every_one(db, settings):
    persona = make_persona("owner")
    destination = destination_create(
        project=persona.project,
        type="webhook",
        name="hook",
        config={"url": "https://example.test/hook", "secret": "very-secret-value"},
    )
    ApiKey.objects.filter(pk=persona.api_key.pk).update(signing_secret="signing-secret-value")
    key_pair = encryption_key_ensure()
    # Cast to a plain text column: the raw stored value, not the field's decryption.
    stored = Destination.objects.filter(pk=destination.pk).values_list(Cast("secrets", TextField()), flat=True).get()
    assert stored.startswith("gAAAA") and "very-secret-value" not in stored

    old_key = settings.APERTUR_SECRET_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.APERTUR_SECRET_KEYS = [new_key, old_key]
    crypto._fernet.cache_clear()
    try:
        call_command("apertur_rotate_secrets")
        settings.APERTUR_SECRET_KEYS = [new_key]  # the old key is gone: everything must open with the new one
        crypto._fernet.cache_clear()
        assert Destination.objects.get(pk=destination.pk).secrets == {"secret": "very-secret-value"}
        assert ApiKey.objects.get(pk=persona.api_key.pk).signing_secret == "signing-secret-value"
        assert UploadEncryptionKey.objects.get(pk=key_pair.pk).private_key_pem == key_pair.private_key_pem
    finally:
        crypto._fernet.cache_clear()


def test_rotation_covers_every_encrypted_column_of_every_model(db):
    """Found by looking: a model that adds an EncryptedJSONField is rotated without touching the command."""
    from apertur.management.commands.apertur_rotate_secrets import encrypted_columns

    found = {(model._meta.label, name) for model, name in encrypted_columns()}

    assert {
        ("destinations.Destination", "secrets"),
        ("projects.ApiKey", "signing_secret"),
        ("sessions_app.UploadEncryptionKey", "private_key_pem"),
    } <= found


def test_healthz_reports_database_and_broker(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
