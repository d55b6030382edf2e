"""The admin is styled under uvicorn: WhiteNoise serves static files from the ASGI process, on Django's async path."""

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpResponseBase
from django.test import AsyncClient
from django.utils.module_loading import import_string

from projects.management.commands.apertur_seed_demo import DEMO_EMAIL

ADMIN_CSS = "/static/admin/css/base.css"


def test_the_running_server_serves_the_admin_css_and_seeds_no_demo_account(live_server_process):
    response = httpx.get(f"{live_server_process.url}{ADMIN_CSS}", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert b"body" in response.content and len(response.content) == int(response.headers["content-length"])
    unchanged = httpx.get(
        f"{live_server_process.url}{ADMIN_CSS}", headers={"If-None-Match": response.headers["etag"]}, timeout=10
    )
    assert unchanged.status_code == 304 and unchanged.content == b""
    admin_login = httpx.get(f"{live_server_process.url}/admin/login/", timeout=10)
    assert admin_login.status_code == 302 and admin_login.headers["location"].startswith("/accounts/login/")
    login_page = httpx.get(f"{live_server_process.url}/accounts/login/", timeout=10)
    assert login_page.status_code == 200 and 'name="login"' in login_page.text
    # A production-style start never creates the demo superuser; only `make run` asks for it.
    assert not get_user_model().objects.filter(email=DEMO_EMAIL).exists()


async def get_on_the_async_path(path: str) -> tuple[HttpResponseBase, bytes]:
    """A request through Django's ASGI handler (as under uvicorn), and the whole streamed body."""
    response = await AsyncClient().get(path)
    return response, b"".join([chunk async for chunk in response.streaming_content])


def test_static_files_are_served_on_the_async_path_with_the_whole_body():
    response, body = async_to_sync(get_on_the_async_path)(ADMIN_CSS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert len(body) == int(response["Content-Length"]) > 0


def test_every_middleware_can_run_async_so_async_views_hold_no_thread():
    # One sync-only middleware makes Django run the whole chain in a thread under ASGI (docs/deployment.md).
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []
