"""The demo account `make run` seeds: a random password kept with the demo key in var/, loopback only unless asked."""

import json
import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from projects.management.commands.apertur_seed_demo import DEMO_EMAIL
from projects.models import ApiKey, key_digest
from projects.services import bootstrap


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def seed_demo(*arguments: str) -> str:
    output = StringIO()
    call_command("apertur_seed_demo", *arguments, stdout=output)
    return output.getvalue()


def test_the_demo_password_is_random_kept_in_a_private_file_and_printed(db, var_dir):
    printed = seed_demo("--host", "127.0.0.1")

    credentials_file = var_dir / "demo-credentials.json"
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
    credentials = json.loads(credentials_file.read_text())
    assert set(credentials) == {"email", "password", "project_id", "api_key"}
    assert credentials["password"] != "demo-password" and len(credentials["password"]) >= 20
    assert f"{DEMO_EMAIL} / {credentials['password']}" in printed
    assert credentials["api_key"] in printed and credentials["project_id"] in printed
    user = get_user_model().objects.get(email=DEMO_EMAIL)
    assert user.is_superuser and user.check_password(credentials["password"])
    assert ApiKey.objects.filter(
        digest=key_digest(credentials["api_key"]), project_id=credentials["project_id"]
    ).exists()


def test_two_demo_installs_get_different_passwords(db, var_dir):
    seed_demo()
    first = json.loads((var_dir / "demo-credentials.json").read_text())["password"]
    (var_dir / "demo-credentials.json").unlink()
    seed_demo()
    second = json.loads((var_dir / "demo-credentials.json").read_text())["password"]
    assert first != second
    assert get_user_model().objects.get(email=DEMO_EMAIL).check_password(second)


def test_every_later_run_prints_the_same_credentials_without_a_new_key(db, var_dir):
    seed_demo()
    first = json.loads((var_dir / "demo-credentials.json").read_text())
    printed = seed_demo()
    assert json.loads((var_dir / "demo-credentials.json").read_text()) == first
    assert first["password"] in printed and first["api_key"] in printed
    assert ApiKey.objects.filter(project_id=first["project_id"]).count() == 1


def test_an_install_seeded_with_the_old_known_password_gets_a_random_one(db, var_dir):
    project, api_key = bootstrap(
        email=DEMO_EMAIL, password="demo-password", project_name="Demo project", site_admin=True
    )
    old = {"email": DEMO_EMAIL, "password": "demo-password", "project_id": str(project.pk), "api_key": api_key}
    (var_dir / "demo-credentials.json").write_text(json.dumps(old))
    (var_dir / "demo-credentials.json").chmod(0o644)

    seed_demo()

    credentials = json.loads((var_dir / "demo-credentials.json").read_text())
    assert credentials["password"] != "demo-password"
    assert credentials["api_key"] == api_key  # the key still works; only the known password had to go
    user = get_user_model().objects.get(email=DEMO_EMAIL)
    assert not user.check_password("demo-password") and user.check_password(credentials["password"])
    assert stat.S_IMODE((var_dir / "demo-credentials.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.test"])
def test_a_non_loopback_bind_gets_no_demo_account_without_the_flag(db, var_dir, host):
    printed = seed_demo("--host", host)

    assert not get_user_model().objects.filter(email=DEMO_EMAIL).exists()
    assert not (var_dir / "demo-credentials.json").exists()
    assert "DEMO=1" in printed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_a_loopback_bind_gets_the_demo_account(db, var_dir, host):
    seed_demo("--host", host)
    assert get_user_model().objects.filter(email=DEMO_EMAIL, is_superuser=True).exists()


def test_a_non_loopback_bind_with_the_flag_gets_the_demo_account_with_a_random_password(db, var_dir):
    printed = seed_demo("--host", "0.0.0.0", "--allow-non-loopback")

    credentials = json.loads((var_dir / "demo-credentials.json").read_text())
    assert credentials["password"] != "demo-password" and credentials["password"] in printed
    assert get_user_model().objects.get(email=DEMO_EMAIL).check_password(credentials["password"])


def test_a_password_its_owner_changed_is_kept_and_not_printed(db, var_dir):
    seed_demo()
    user = get_user_model().objects.get(email=DEMO_EMAIL)
    user.set_password("my-own-strong-password")
    user.save()

    printed = seed_demo()

    assert get_user_model().objects.get(email=DEMO_EMAIL).check_password("my-own-strong-password")
    assert f"{DEMO_EMAIL} / (the password you set)" in printed


def test_a_later_run_on_a_reachable_address_switches_the_demo_account_off_until_a_loopback_run(db, var_dir):
    seed_demo()

    printed = seed_demo("--host", "0.0.0.0")
    assert get_user_model().objects.get(email=DEMO_EMAIL).is_active is False
    assert "switched off" in printed

    seed_demo()
    assert get_user_model().objects.get(email=DEMO_EMAIL).is_active is True
