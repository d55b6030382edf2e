"""`/` answers a small HTML page saying what this server is, not the API's JSON 404: a visitor is offered the
sign-in and sign-up, a signed-in user their projects, staff the admin."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_persona


def test_the_front_page_is_html_linking_to_the_sign_in_and_the_docs(client, db):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert 'href="/accounts/login/"' in page and 'href="/accounts/signup/"' in page
    assert 'href="/admin/"' not in page
    assert "docs/api.md" in page and "README.md" in page and "docs/configuration.md" in page
    assert len(queries) == 0


def test_a_signed_in_user_sees_their_projects_and_staff_the_admin(client, db):
    persona = make_persona("home")
    client.force_login(persona.user)

    page = client.get("/").content.decode()
    assert persona.project.name.replace("'", "&#x27;") in page
    assert f'href="/projects/{persona.project.pk}/destinations"' in page
    assert 'href="/admin/"' not in page

    persona.user.is_staff = True
    persona.user.save()
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_the_front_page_only_answers_reads(client, db):
    assert client.post("/").status_code == 405
