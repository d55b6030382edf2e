"""Everything Apertur writes under var/ is private: files 0600, directories 0700."""

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.conftest import REPO_ROOT
from tests.factories import image_bytes


def embedded_environment(var_dir: Path) -> dict[str, str]:
    """The environment of a first `make run`: nothing configured, so the database and secrets go to var/."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "DRAMATIQ_BROKER_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "APERTUR_SECRET_KEYS"}
    }
    return {**environment, "APERTUR_VAR_DIR": str(var_dir), "APERTUR_MEDIA_ROOT": str(var_dir / "media")}


def manage(var_dir: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=embedded_environment(var_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def modes_under(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}


def test_make_runs_steps_leave_only_private_files_and_directories_in_var(tmp_path):
    var_dir = tmp_path / "var"
    manage(var_dir, "migrate", "--noinput")
    manage(var_dir, "collectstatic", "--noinput", "--verbosity", "0")
    manage(var_dir, "apertur_seed_demo", "--host", "127.0.0.1")

    modes = modes_under(var_dir)
    for name in ["django_secret_key", "secret_keys", "apertur.sqlite3", "demo-credentials.json"]:
        assert modes.get(name) == 0o600, (name, modes.get(name))
    assert any(name.startswith("static/admin/css/") for name in modes)
    loose = {name: oct(mode) for name, mode in modes.items() if mode != (0o700 if (var_dir / name).is_dir() else 0o600)}
    assert loose == {}


def test_migrate_alone_never_creates_the_demo_account(tmp_path):
    var_dir = tmp_path / "var"
    manage(var_dir, "migrate", "--noinput")

    assert not (var_dir / "demo-credentials.json").exists()
    with sqlite3.connect(var_dir / "apertur.sqlite3") as database:
        assert database.execute("SELECT count(*) FROM auth_user").fetchone() == (0,)


def test_an_older_install_var_is_made_private_at_start(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir(mode=0o755)
    var_dir.chmod(0o755)
    (var_dir / "apertur.sqlite3").touch(mode=0o644)
    (var_dir / "apertur.sqlite3").chmod(0o644)

    manage(var_dir, "check")

    assert stat.S_IMODE(var_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((var_dir / "apertur.sqlite3").stat().st_mode) == 0o600


def test_staged_photos_and_their_folders_are_private(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")

    name = default_storage.save("staging/2025/01/02/img_1.jpg", ContentFile(image_bytes()))

    path = Path(default_storage.path(name))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    folder = path.parent
    while folder != tmp_path:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        folder = folder.parent
