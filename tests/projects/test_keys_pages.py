"""A project's API keys in the browser pages (projects/pages.py): who sees and changes what, a new key shown once,
the API's checks, signing secrets, revocation, no N+1."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from projects.models import ApiKey, Membership
from projects.services import api_key_create
from tests.factories import make_persona, signed_in


def form(**fields) -> dict:
    """The create form as a browser sends it: every image type ticked unless said otherwise."""
    return {"allowedMimeTypes": ["image/jpeg", "image/png", "image/webp", "image/heic"], **fields}


def keys_url(owner, *rest: str) -> str:
    return "/".join([f"/projects/{owner.project.pk}/keys", *rest])


@pytest.mark.parametrize(
    ("who", "sees", "creates"),
    [("owner", 200, 302), ("admin", 200, 302), ("member", 200, 403), ("outsider", 404, 404)],
)
def test_who_sees_the_keys_and_who_makes_them(owner, roles, who, sees, creates):
    client = signed_in(roles[who])

    page = client.get(keys_url(owner))
    made = client.post(keys_url(owner), form(label=f"by {who}"))

    assert page.status_code == sees
    assert made.status_code == creates
    assert ApiKey.objects.filter(label=f"by {who}").exists() == (creates == 302)
    if sees == 200:
        assert owner.api_key.prefix in page.content.decode()
        assert ("Create key" in page.content.decode()) == (creates == 302)


def test_an_anonymous_visitor_is_sent_to_sign_in(owner):
    response = Client().get(keys_url(owner))

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_a_new_key_is_shown_once_and_works(owner):
    client = signed_in(owner.user)

    made = client.post(
        keys_url(owner),
        form(label="Claims backend", env="test", maxImages="7", allowedIps="203.0.113.0/24\n10.0.0.1"),
        follow=True,
    )

    page = made.content.decode()
    key = ApiKey.objects.get(label="Claims backend")
    plain = page.split('<code id="new-key">')[1].split("</code>")[0]
    assert plain.startswith("aptr_test_") and plain.startswith(key.prefix)
    assert (key.env, key.max_images, key.allowed_ips) == ("test", 7, ["203.0.113.0/24", "10.0.0.1"])
    assert "no-store" in made["Cache-Control"]
    assert plain not in client.get(keys_url(owner)).content.decode()  # shown once: a reload shows it no more
    assert ApiKey.objects.filter(label="Claims backend").count() == 1
    elsewhere = Client().get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {plain}", REMOTE_ADDR="198.51.100.1")
    allowed = Client().get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {plain}", REMOTE_ADDR="10.0.0.1")
    assert (elsewhere.status_code, allowed.status_code) == (403, 200)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"label": "x" * 201}, "label"),
        ({"label": "a", "maxImages": "0"}, "maxImages"),
        ({"label": "a", "maxImages": "lots"}, "maxImages"),
        ({"label": "a", "allowedIps": "10.0.0.300"}, "allowedIps"),
        ({"label": "a", "allowedDomains": "not a host"}, "allowedDomains"),
        ({"label": "a", "defaultDestinations": "not-a-destination"}, "defaultDestinations"),
        ({"label": "a\x00b"}, "label"),
        ({"label": "a", "env": "prod"}, "env"),
    ],
)
def test_bad_settings_are_said_next_to_the_form_and_make_nothing(owner, fields, field):
    response = signed_in(owner.user).post(keys_url(owner), form(**fields))

    assert response.status_code == 400
    assert f"{field}:" in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_unticking_every_image_type_is_refused_not_a_key_for_every_type(owner):
    response = signed_in(owner.user).post(keys_url(owner), {"label": "none", "allowedMimeTypes": []})

    assert response.status_code == 400 and "allowedMimeTypes:" in response.content.decode()
    assert not ApiKey.objects.filter(label="none").exists()


def test_a_bad_line_of_a_list_is_named_with_its_message(owner):
    response = signed_in(owner.user).post(keys_url(owner), form(label="a", allowedIps="10.0.0.1\n10.0.0.300"))

    assert "allowedIps: line 2: must be an IP address or a CIDR network" in response.content.decode()


def test_a_refused_form_keeps_what_was_ticked(owner):
    destination = create_destination_row(owner)

    response = signed_in(owner.user).post(
        keys_url(owner),
        {
            "label": "x" * 201,
            "allowedMimeTypes": ["image/jpeg"],
            "defaultDestinations": [str(destination.pk)],
            "longPollingEnabled": "on",
        },
    )

    page = response.content.decode()
    assert 'value="image/jpeg" checked' in page and 'value="image/png" checked' not in page
    assert f'value="{destination.pk}" checked' in page
    assert 'name="longPollingEnabled" checked' in page


def test_a_shown_once_secret_is_kept_encrypted_for_its_own_page_and_two_can_wait_at_once(owner):
    from django.contrib.sessions.models import Session

    other = make_persona("keys-second-project")
    Membership.objects.create(user=owner.user, project=other.project, role="owner")
    client = signed_in(owner.user)
    first = client.post(keys_url(owner), form(label="first"))
    second = client.post(keys_url(owner), form(label="second"))

    stored = "".join(str(session.get_decoded()) for session in Session.objects.all())
    assert "aptr_" not in stored  # encrypted while it waits
    assert (
        "new-key"
        not in client.get(f"/projects/{other.project.pk}/keys?" + first["Location"].split("?")[1]).content.decode()
    )
    shown = [client.get(answer["Location"]).content.decode() for answer in (first, second)]
    assert all('<code id="new-key">aptr_live_' in page for page in shown)
    assert "new-key" not in client.get(first["Location"]).content.decode()  # once


def test_a_shown_once_secret_not_picked_up_in_time_is_gone(owner, monkeypatch):
    from apertur import pages

    client = signed_in(owner.user)
    made = client.post(keys_url(owner), form(label="late"))
    monkeypatch.setattr(pages, "SHOW_ONCE_SECONDS", -1)

    assert "new-key" not in client.get(made["Location"]).content.decode()


def create_destination_row(persona):
    from destinations.services import destination_create

    return destination_create(
        project=persona.project,
        type="webhook",
        name="hook",
        config={"url": "https://example.test/h", "secret": "long-enough-secret"},
    )


def test_a_signing_secret_is_shown_once_then_required_and_can_be_removed(owner):
    client = signed_in(owner.user)

    made = client.post(keys_url(owner, str(owner.api_key.pk), "signing-secret"), follow=True)

    secret = made.content.decode().split('<code id="new-secret">')[1].split("</code>")[0]
    owner.api_key.refresh_from_db()
    assert owner.api_key.signing_secret == secret
    assert Client().get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {owner.plain_key}").status_code == 401
    client.post(keys_url(owner, str(owner.api_key.pk), "signing-secret"), {"remove": "1"})
    owner.api_key.refresh_from_db()
    assert owner.api_key.signing_secret is None


def test_revoking_a_key_stops_it_and_a_member_or_outsider_cannot(owner, roles):
    _, plain = api_key_create(project=owner.project, label="doomed")
    doomed = ApiKey.objects.get(label="doomed")
    url = keys_url(owner, str(doomed.pk), "revoke")

    assert signed_in(roles["member"]).post(url).status_code == 403
    assert signed_in(roles["outsider"]).post(url).status_code == 404
    revoked = signed_in(roles["admin"]).post(url)

    assert revoked.status_code == 302
    assert not ApiKey.objects.filter(pk=doomed.pk).exists()
    assert Client().get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 401


def test_writes_need_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)

    assert client.post(keys_url(owner), form(label="x")).status_code == 403
    assert client.post(keys_url(owner, str(owner.api_key.pk), "revoke")).status_code == 403
    assert client.post(keys_url(owner, str(owner.api_key.pk), "signing-secret")).status_code == 403


def test_the_list_reads_a_fixed_number_of_queries_whatever_the_number_of_keys(owner):
    client = signed_in(owner.user)
    client.get(keys_url(owner))
    with CaptureQueriesContext(connection) as few:
        client.get(keys_url(owner))
    destination = create_destination_row(owner)
    for number in range(10):
        api_key_create(project=owner.project, label=f"more {number}", default_destination_ids=[str(destination.pk)])
    with CaptureQueriesContext(connection) as many:
        client.get(keys_url(owner))

    assert len(many) == len(few)


@pytest.mark.parametrize(("who", "status"), [("owner", 302), ("admin", 302), ("member", 403), ("outsider", 404)])
def test_who_edits_a_key(owner, roles, who, status):
    client = signed_in(roles[who])
    url = keys_url(owner, str(owner.api_key.pk), "edit")

    page = client.get(url)
    saved = client.post(url, form(label=f"edited by {who}", isActive="on"))

    assert page.status_code == (200 if status == 302 else status)
    assert saved.status_code == status
    owner.api_key.refresh_from_db()
    assert (owner.api_key.label == f"edited by {who}") == (status == 302)


def test_the_edit_form_shows_the_keys_settings_and_saves_every_one(owner, settings):
    owner.api_key.max_images, owner.api_key.allowed_ips = 9, ["10.0.0.0/8"]
    owner.api_key.allowed_mime_types = ["image/png"]
    owner.api_key.save()
    client = signed_in(owner.user)
    url = keys_url(owner, str(owner.api_key.pk), "edit")

    page = client.get(url).content.decode()
    saved = client.post(
        url,
        {"label": "Claims", "allowedMimeTypes": ["image/jpeg"], "maxImages": "", "allowedDomains": "app.example.com"},
    )

    assert 'name="maxImages" type="number" min="1" value="9"' in page and "10.0.0.0/8" in page
    assert 'value="image/png" checked' in page and 'value="image/jpeg" checked' not in page
    assert saved.status_code == 302
    owner.api_key.refresh_from_db()
    assert owner.api_key.label == "Claims" and owner.api_key.max_images is None  # emptied: the project's default
    assert owner.api_key.allowed_mime_types == ["image/jpeg"] and owner.api_key.allowed_ips == []
    assert owner.api_key.allowed_domains == ["app.example.com"]
    assert owner.api_key.is_active is False  # "Active" was not ticked: paused


def test_a_refused_edit_says_why_and_changes_nothing(owner):
    client = signed_in(owner.user)
    url = keys_url(owner, str(owner.api_key.pk), "edit")

    refused = client.post(url, form(label="x" * 201, maxImages="0", allowedIps="not an ip", isActive="on"))
    unknown = client.get(keys_url(owner, "not-a-key", "edit"))

    text = refused.content.decode()
    assert refused.status_code == 400 and "maxImages" in text and "allowedIps" in text
    owner.api_key.refresh_from_db()
    assert owner.api_key.label != "x" * 201
    assert unknown.status_code == 404


def test_editing_a_key_deleted_meanwhile_is_404_not_500(owner, monkeypatch):
    from projects import selectors

    real = selectors.key_for_project

    def found_then_deleted(**arguments):
        found = real(**arguments)
        ApiKey.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(selectors, "key_for_project", found_then_deleted)
    client = signed_in(owner.user)
    client.raise_request_exception = False

    response = client.post(keys_url(owner, str(owner.api_key.pk), "edit"), form(label="late", isActive="on"))

    assert response.status_code == 404
