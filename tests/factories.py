"""Test data: personas, images in every format, and helpers that wait for a condition."""

import io
from dataclasses import dataclass

import pillow_heif
from django.contrib.auth import get_user_model
from django.test import Client
from PIL import Image as PillowImage

from projects.models import ApiKey, Project
from projects.services import api_key_create, project_create
from tests.waiting import wait_until  # noqa: F401 (re-exported: the tests import it from here)

pillow_heif.register_heif_opener()


@dataclass
class Persona:
    """A dashboard user with a project and a live API key for it."""

    user: object
    project: Project
    api_key: ApiKey
    plain_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.plain_key}"}


def make_persona(name: str) -> Persona:
    user = get_user_model().objects.create_user(username=name, email=f"{name}@example.test", password="x" * 12)
    project = project_create(name=f"{name}'s project", owner=user)
    api_key, plain = api_key_create(project=project, label=name)
    return Persona(user=user, project=project, api_key=api_key, plain_key=plain)


def signed_in(user) -> Client:
    """A browser client signed in as `user` (the dashboard's page tests)."""
    client = Client()
    client.force_login(user)
    return client


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    PillowImage.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG with real entropy-coded data (a flat colour compresses to almost nothing)."""
    buffer = io.BytesIO()
    PillowImage.effect_noise(size, 64).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
