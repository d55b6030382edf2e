"""/u/<session_id>, the phone upload page (docs/upload-page.md), through Django's test client: every state and
its status code, the password gate, the plain form post (no JavaScript), languages and the security headers.
The page's script is tested in a real browser (tests/e2e/test_upload_page_browser.py)."""

import base64
import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.models import Image, UploadSession
from sessions_app.page_security import frame_ancestors
from sessions_app.passwords import password_cookie_name
from tests.factories import image_bytes, make_persona
from tests.sessions_app.helpers import create_session, upload

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
PASSWORD = "open-sesame"


@pytest.fixture
def persona(db):
    return make_persona("owner")


@pytest.fixture
def session(persona, api_client) -> dict:
    return create_session(api_client, persona, max_images=3)


@pytest.fixture
def browser() -> Client:
    """A browser: CSRF checks on, as in production."""
    return Client(enforce_csrf_checks=True)


def get_page(client, session_id: str, path: str = "", **extra):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/u/{session_id}{path}", **extra)
    writes = [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith(WRITES)]
    assert writes == [], "a GET of the upload page must not write"
    return response


def page_config(response) -> dict:
    match = re.search(r'<script id="upload-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the page carries its script's configuration"
    return json.loads(match.group(1))


def csrf_token(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode()).group(1)


def post_photo(
    browser, session_id: str, data: bytes, *, token: str | None, name="photo.jpg", content_type="image/jpeg"
):
    fields = {"file": SimpleUploadedFile(name, data, content_type), "source": "gallery"}
    if token is not None:
        fields["csrfmiddlewaretoken"] = token
    return browser.post(f"/u/{session_id}", fields)


# --- states and status codes -------------------------------------------------------------------------------


def test_an_open_session_answers_the_upload_page(browser, session):
    assert session["upload_url"].endswith(f"/u/{session['id']}")
    response = get_page(browser, session["id"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "Take photo" in page and 'capture="environment"' in page
    assert "Choose from gallery" in page and "multiple" in page
    assert 'name="viewport"' in page
    assert "0 of 3 photos received" in page
    config = page_config(response)
    assert config["maxImages"] == 3 and config["imagesCount"] == 0
    assert config["urls"]["images"] == f"/api/v1/upload/{session['id']}/images"
    assert config["urls"]["events"] == f"/api/v1/upload/{session['id']}/events"
    assert config["words"]["FILE_TOO_LARGE"] == "This photo is too big: the limit is 20 MB."


def test_the_page_counts_the_photos_received(browser, api_client, session):
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    response = get_page(browser, session["id"])
    assert "1 of 3 photos received" in response.content.decode()
    assert page_config(response)["imagesCount"] == 1


@pytest.mark.parametrize("session_id", ["sess_doesnotexist", "sess_%00nul"])
def test_an_unknown_session_answers_a_friendly_404(browser, db, session_id):
    response = get_page(browser, session_id)

    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert "This upload link does not exist" in page and "ask whoever sent it to you for a new link" in page


def test_a_session_past_its_expiry_answers_410_and_the_get_does_not_close_it(browser, api_client, session):
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = get_page(browser, session["id"])

    assert response.status_code == 410
    page = response.content.decode()
    assert "This link has expired" in page and "Ask whoever sent it to you for a new link." in page
    assert "The photo sent before it expired was received." in page
    assert UploadSession.objects.get(pk=session["id"]).closed_at is None  # the sweeper closes it, not a read


def test_a_closed_session_answers_409_saying_to_ask_for_a_new_link(browser, api_client, session):
    assert api_client.post(f"/api/v1/upload/{session['id']}/complete", {}, format="json").status_code == 200

    response = get_page(browser, session["id"])

    assert response.status_code == 409
    assert "This upload is finished" in response.content.decode()
    assert "ask whoever sent you the link for a new one" in response.content.decode()


def test_a_full_session_is_closed(browser, api_client, persona):
    session = create_session(api_client, persona, max_images=1)
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    response = get_page(browser, session["id"])
    assert response.status_code == 409
    assert "The photo sent with it was received." in response.content.decode()


def test_head_answers_like_get_and_other_methods_are_refused(browser, session):
    assert browser.head(f"/u/{session['id']}").status_code == 200
    assert browser.put(f"/u/{session['id']}").status_code == 405
    assert browser.put(f"/u/{session['id']}/done").status_code == 405


# --- the password gate --------------------------------------------------------------------------------------


@pytest.fixture
def protected(persona, api_client) -> dict:
    return create_session(api_client, persona, max_images=3, password=PASSWORD)


def test_a_protected_session_shows_the_gate_and_nothing_of_the_upload(browser, protected):
    response = get_page(browser, protected["id"])

    assert response.status_code == 200
    page = response.content.decode()
    assert "This upload is protected" in page
    assert 'type="password"' in page and 'autocomplete="current-password"' in page
    assert "Take photo" not in page


def test_the_right_password_sets_the_signed_cookie_and_opens_the_page(browser, protected):
    token = csrf_token(get_page(browser, protected["id"]))

    response = browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})

    assert response.status_code == 303
    assert response["Location"] == f"/u/{protected['id']}"
    cookie = response.cookies[password_cookie_name(protected["id"])]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert "Take photo" in get_page(browser, protected["id"]).content.decode()


def test_a_wrong_password_says_so_with_401(browser, protected):
    token = csrf_token(get_page(browser, protected["id"]))

    response = browser.post(f"/u/{protected['id']}/password", {"password": "nope", "csrfmiddlewaretoken": token})

    assert response.status_code == 401
    assert "That password is not right." in response.content.decode()
    assert password_cookie_name(protected["id"]) not in response.cookies


def test_too_many_wrong_passwords_lock_out_with_the_wait_in_words(browser, protected, settings):
    settings.APERTUR_PASSWORD_MAX_ATTEMPTS = 2
    token = csrf_token(get_page(browser, protected["id"]))
    for _ in range(2):
        browser.post(f"/u/{protected['id']}/password", {"password": "nope", "csrfmiddlewaretoken": token})

    response = browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many wrong passwords. Try again in 15 minutes." in response.content.decode()
    # The gate itself shows the lockout too.
    gate = get_page(browser, protected["id"])
    assert gate.status_code == 429 and "Too many wrong passwords" in gate.content.decode()


def test_the_password_form_needs_its_csrf_token(browser, protected):
    response = browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD})

    assert response.status_code == 403
    assert "This page has expired" in response.content.decode()
    assert password_cookie_name(protected["id"]) not in response.cookies


def test_a_changed_password_closes_the_page_again(browser, api_client, persona, protected):
    token = csrf_token(get_page(browser, protected["id"]))
    browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})
    response = api_client.patch(
        f"/api/v1/upload-sessions/{protected['id']}", {"password": "another-one"}, format="json", **persona.auth
    )
    assert response.status_code == 200

    assert "This upload is protected" in get_page(browser, protected["id"]).content.decode()


# --- the plain form post (no JavaScript) ---------------------------------------------------------------------


def test_the_plain_form_sends_one_photo_through_the_upload_service(browser, session):
    token = csrf_token(get_page(browser, session["id"]))

    response = post_photo(browser, session["id"], image_bytes(size=(80, 60)), token=token, name="kitchen.jpg")

    assert response.status_code == 303
    image = Image.objects.get(session_id=session["id"])
    assert (image.filename, image.width, image.height, image.source) == ("kitchen.jpg", 80, 60, "gallery")
    assert response["Location"] == f"/u/{session['id']}?received={image.pk}"
    result = get_page(browser, session["id"], f"?received={image.pk}")
    assert result.status_code == 200
    assert "Received: kitchen.jpg" in result.content.decode()
    assert "1 of 3 photos received" in result.content.decode()


def test_the_plain_form_without_its_csrf_token_is_refused_and_nothing_is_kept(browser, session):
    get_page(browser, session["id"])

    response = post_photo(browser, session["id"], image_bytes(), token=None)

    assert response.status_code == 403
    assert "This page has expired" in response.content.decode()
    assert not Image.objects.filter(session_id=session["id"]).exists()


@pytest.mark.parametrize(
    ("data", "name", "status", "words"),
    [
        (b"not an image at all", "notes.txt", 400, "This file is not a photo that can be read."),
        (image_bytes("PNG"), "drawing.png", 415, "This type of file is not accepted here. Accepted: JPEG."),
        (image_bytes(size=(400, 300)), "big.jpg", 422, "at most 200 pixels wide and high"),
    ],
)
def test_a_refused_photo_is_said_in_plain_words_with_its_status(
    browser, api_client, persona, data, name, status, words
):
    session = create_session(
        api_client, persona, max_images=3, allowed_mime_types=["image/jpeg"], max_image_dimension=200
    )
    token = csrf_token(get_page(browser, session["id"]))

    response = post_photo(browser, session["id"], data, token=token, name=name)

    assert response.status_code == status
    page = response.content.decode()
    assert words in page
    assert "Take photo" in page  # the page stays usable: the next photo can be sent
    assert not Image.objects.filter(session_id=session["id"]).exists()


def test_a_photo_over_the_size_limit_names_the_limit(browser, api_client, persona, settings):
    settings.APERTUR_MAX_IMAGE_SIZE_MB = 1
    session = create_session(api_client, persona, max_images=3)
    token = csrf_token(get_page(browser, session["id"]))

    response = post_photo(browser, session["id"], b"\xff\xd8" + b"x" * (1024 * 1024 + 10), token=token)

    assert response.status_code == 413
    assert "This photo is too big: the limit is 1 MB." in response.content.decode()


def test_a_photo_into_a_session_that_expired_meanwhile_gets_the_expired_page(browser, session):
    token = csrf_token(get_page(browser, session["id"]))
    UploadSession.objects.filter(pk=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post_photo(browser, session["id"], image_bytes(), token=token)

    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()


def test_the_plain_form_of_a_protected_session_needs_the_gate_first(browser, protected):
    token = csrf_token(get_page(browser, protected["id"]))

    response = post_photo(browser, protected["id"], image_bytes(), token=token)

    assert response.status_code == 200
    assert "This upload is protected" in response.content.decode()
    assert not Image.objects.filter(session_id=protected["id"]).exists()
    browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})
    assert post_photo(browser, protected["id"], image_bytes(), token=token).status_code == 303


def test_done_completes_the_session_and_thanks(browser, api_client, session):
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    token = csrf_token(get_page(browser, session["id"]))

    response = browser.post(f"/u/{session['id']}/done", {"csrfmiddlewaretoken": token})

    assert response.status_code == 303
    assert UploadSession.objects.get(pk=session["id"]).close_reason == "completed"
    thanks = get_page(browser, session["id"], "?done=1")
    assert thanks.status_code == 200
    assert "Thank you!" in thanks.content.decode()
    assert "Your photo was received." in thanks.content.decode()


def test_done_needs_its_csrf_token(browser, session):
    get_page(browser, session["id"])
    assert browser.post(f"/u/{session['id']}/done", {}).status_code == 403
    assert UploadSession.objects.get(pk=session["id"]).closed_at is None


# --- languages and colours ------------------------------------------------------------------------------------


def test_a_french_page_says_french_things(browser, session):
    page = get_page(browser, session["id"], "?lang=fr").content.decode()

    assert '<html lang="fr"' in page
    assert "Envoyez vos photos" in page and "Prendre une photo" in page and "Choisir dans la galerie" in page
    assert "0 photo reçue sur 3" in page
    config = page_config(get_page(browser, session["id"], "?lang=fr"))
    assert config["words"]["FILE_TOO_LARGE"] == "Cette photo est trop lourde : la limite est de 20 Mo."


def test_the_browser_language_is_used_without_lang(browser, session):
    page = get_page(browser, session["id"], HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9,en;q=0.5").content.decode()
    assert '<html lang="es"' in page and "Envía tus fotos" in page


def test_an_unknown_lang_falls_back_to_the_browser_language(browser, session):
    page = get_page(browser, session["id"], "?lang=xx", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Envoyez vos photos" in page


def test_the_language_survives_a_form_post_and_the_error_pages_speak_it(browser, db):
    page = get_page(browser, "sess_unknown", "?lang=es")
    assert page.status_code == 404 and "Este enlace de envío no existe" in page.content.decode()


def test_a_spanish_refusal_is_in_spanish(browser, session):
    token = csrf_token(get_page(browser, session["id"], "?lang=es"))
    response = browser.post(
        f"/u/{session['id']}?lang=es",
        {"file": SimpleUploadedFile("x.jpg", b"nothing", "image/jpeg"), "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 400
    assert "Este archivo no es una foto legible." in response.content.decode()


def test_the_page_translations_are_compiled():
    """locale/*/django.mo is what `compilemessages` makes of the .po files next to it (docs/upload-page.md)."""
    import subprocess
    from pathlib import Path

    for po in Path("locale").glob("*/LC_MESSAGES/django.po"):
        compiled = subprocess.run(
            ["msgfmt", "--check-format", "-o", "-", str(po)], check=True, capture_output=True
        ).stdout
        assert compiled == po.with_suffix(".mo").read_bytes(), f"run `manage.py compilemessages` for {po}"


@pytest.mark.parametrize(
    ("query", "attribute"),
    [("?colorScheme=dark", 'data-color-scheme="dark"'), ("?colorScheme=light", 'data-color-scheme="light"')],
)
def test_the_colour_scheme_can_be_chosen(browser, session, query, attribute):
    assert attribute in get_page(browser, session["id"], query).content.decode()


def test_an_unknown_colour_scheme_follows_the_phone(browser, session):
    page = get_page(browser, session["id"], "?colorScheme=%22%3E%3Cscript%3E").content.decode()
    assert re.search(r"<html lang=\"en\">", page) and 'content="light dark"' in page


# --- security headers ------------------------------------------------------------------------------------------


def csp_directives(response) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in policy.split("; ")}


@pytest.mark.parametrize("path", ["", "/nope-unknown"])
def test_every_page_answer_is_hardened(browser, session, path):
    response = get_page(browser, session["id"] + path if not path else "sess_unknown")

    directives = csp_directives(response)
    assert directives["script-src"].startswith("'self' 'sha256-")
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "*" or response.status_code == 404
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "X-Frame-Options" not in response  # frame-ancestors decides


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_only_the_pages_own_inline_script_and_style_run_each_allowed_by_its_hash(browser, session):
    """The script and style are inlined (one request on a slow connection); the policy names each by hash."""
    response = get_page(browser, session["id"])
    page = response.content.decode()
    directives = csp_directives(response)

    executable = re.findall(r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", page, flags=re.S)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", page, flags=re.S)
    assert len(executable) == 1 and len(styles) == 1
    assert directives["script-src"] == f"'self' {csp_hash(executable[0])}"
    assert directives["style-src"] == f"'self' {csp_hash(styles[0])}"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert executable[0] == Path("static/upload/upload.js").read_text()
    # No inline event handler attributes either (they would need 'unsafe-inline').
    markup = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S)
    assert not re.search(r"\son[a-z]+\s*=", markup)


def test_frame_ancestors_follow_the_keys_allowed_domains(browser, api_client, persona):
    persona.api_key.allowed_domains = ["shop.example.com", "*.claims.example", "https://portal.example.org/path"]
    persona.api_key.save()
    session = create_session(api_client, persona, max_images=3)

    directives = csp_directives(get_page(browser, session["id"]))

    assert directives["frame-ancestors"] == "'self' shop.example.com:* *.claims.example:* portal.example.org:*"


@pytest.mark.parametrize("hostile", ["evil.com; script-src *", "a b", "'unsafe-inline'", "*", 7])
def test_a_hostile_allowed_domain_cannot_change_the_policy(hostile):
    assert frame_ancestors([hostile]) == "'self'"


def test_the_password_cookie_can_cross_into_an_iframe_over_https(browser, protected, settings):
    settings.APERTUR_PUBLIC_URL = "https://photos.example.com"
    token = csrf_token(get_page(browser, protected["id"]))

    response = browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})

    cookie = response.cookies[password_cookie_name(protected["id"])]
    assert cookie["samesite"] == "None" and cookie["secure"] and cookie["httponly"]


# --- hostile and odd requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("received", ["%00", "img_%00", "x" * 500, "img_01ABC"])
def test_a_hostile_received_parameter_is_ignored(browser, session, received):
    response = get_page(browser, session["id"], f"?received={received}")
    assert response.status_code == 200
    assert "Received:" not in response.content.decode()


def test_the_last_photo_of_a_plain_form_post_is_confirmed_with_thanks(browser, api_client, persona):
    session = create_session(api_client, persona, max_images=1)
    token = csrf_token(get_page(browser, session["id"]))

    response = post_photo(browser, session["id"], image_bytes(), token=token)

    assert response.status_code == 303
    thanks = get_page(browser, session["id"], response["Location"].split(session["id"], 1)[1])
    assert thanks.status_code == 200
    assert "Thank you!" in thanks.content.decode() and "Your photo was received." in thanks.content.decode()


@pytest.mark.parametrize("path", ["/password", "/done", "/"])
def test_a_get_of_a_forms_address_or_with_a_slash_leads_back_to_the_page(browser, session, path):
    response = browser.get(f"/u/{session['id']}{path}?lang=fr")
    assert response.status_code == 303
    assert response["Location"] == f"/u/{session['id']}?lang=fr"


def test_a_malformed_form_body_gets_the_friendly_page_with_its_headers(browser, protected):
    get_page(browser, protected["id"])
    response = browser.generic(
        "POST",
        f"/u/{protected['id']}/password",
        b"--x\r\nbroken",
        content_type="multipart/form-data; boundary=x",
    )
    assert response.status_code in (400, 403)
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Open the page again" in response.content.decode()
    assert "frame-ancestors" in response["Content-Security-Policy"]


def test_too_many_fields_get_the_friendly_page(browser, session, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    token = csrf_token(get_page(browser, session["id"]))
    fields = {f"f{index}": "x" for index in range(10)}
    response = browser.post(f"/u/{session['id']}/done", {"csrfmiddlewaretoken": token, **fields})
    assert response.status_code == 400
    assert "Something went wrong" in response.content.decode()
    assert UploadSession.objects.get(pk=session["id"]).closed_at is None


def test_done_is_offered_only_once_a_photo_was_received(browser, api_client, session):
    assert re.search(r'id="done-button"[^>]* disabled', get_page(browser, session["id"]).content.decode())
    assert upload(api_client, session["id"], image_bytes()).status_code == 201
    assert not re.search(r'id="done-button"[^>]* disabled', get_page(browser, session["id"]).content.decode())


def test_the_password_cookie_lives_as_long_as_the_session(browser, api_client, persona):
    protected = create_session(api_client, persona, password=PASSWORD, expires_in_hours=2)
    token = csrf_token(get_page(browser, protected["id"]))

    response = browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})

    max_age = int(response.cookies[password_cookie_name(protected["id"])]["max-age"])
    assert 2 * 3600 - 60 <= max_age <= 2 * 3600


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({"HTTP_SEC_FETCH_SITE": "cross-site"}, False),
        ({"HTTP_SEC_FETCH_SITE": "same-site"}, False),
        ({"HTTP_ORIGIN": "https://evil.example"}, False),
        ({"HTTP_SEC_FETCH_SITE": "same-origin"}, True),
        ({"HTTP_ORIGIN": "http://testserver"}, True),
        ({}, True),
    ],
)
def test_the_upload_api_takes_the_password_cookie_only_from_the_page_itself(browser, protected, headers, accepted):
    token = csrf_token(get_page(browser, protected["id"]))
    browser.post(f"/u/{protected['id']}/password", {"password": PASSWORD, "csrfmiddlewaretoken": token})

    complete = browser.post(
        f"/api/v1/upload/{protected['id']}/complete", {}, content_type="application/json", **headers
    )
    sent = browser.post(
        f"/api/v1/upload/{protected['id']}/images",
        {"file": SimpleUploadedFile("p.jpg", image_bytes(), "image/jpeg")},
        **headers,
    )

    if accepted:
        assert complete.status_code == 200
    else:
        assert (complete.status_code, complete.json()["code"]) == (401, "PASSWORD_REQUIRED")
        assert (sent.status_code, sent.json()["code"]) == (401, "PASSWORD_REQUIRED")
        assert UploadSession.objects.get(pk=protected["id"]).closed_at is None
