"""`/` answers a small HTML page saying what this server is, not the API's JSON 404."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def test_the_front_page_is_html_linking_to_the_admin_and_the_docs(client, db):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert 'href="/admin/"' in page
    assert "docs/api.md" in page and "README.md" in page and "docs/configuration.md" in page
    assert len(queries) == 0


def test_the_front_page_only_answers_reads(client, db):
    assert client.post("/").status_code == 405
