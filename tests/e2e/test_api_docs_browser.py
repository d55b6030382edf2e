"""The interactive API docs (docs/api.md "OpenAPI") in a real browser: Swagger UI renders every operation of the
schema from this server's own files, and its Content-Security-Policy refuses nothing the page needs."""

import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def site(transactional_db, tmp_path):
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log")
    yield server
    server.stop()


def test_swagger_ui_lists_every_operation_and_nothing_is_refused_or_fetched_elsewhere(site, chromium):
    schema = httpx.get(f"{site.url}/api/schema/", timeout=10).json()
    operations = sum(len(item) for item in schema["paths"].values())
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: request.url.startswith(site.url) or elsewhere.append(request.url))
    try:
        page.goto(f"{site.url}/api/docs/")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() == operations
        assert page.locator(".opblock-summary-path", has_text="/api/v1/upload-sessions").count() >= 1
        # An operation opens with its responses, the error envelope among them.
        page.locator(".opblock-summary", has_text="/api/v1/upload/{session_id}/images").first.click()
        page.wait_for_selector(".responses-table")
        assert page.locator(".response-col_status", has_text="413").count() >= 1
        assert problems == []
        assert elsewhere == []
    finally:
        context.close()
