"""A project's destinations in the browser pages (destinations/pages.py): who sees and changes what, the list's
fixed number of queries, one form per type built from its config model, the API's messages next to the fields,
secrets never in a page, the PATCH rule for an empty secret, the test button, pause/resume and delete."""

import base64
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from destinations import page_forms, services
from destinations.backends import BACKENDS
from destinations.models import Destination
from tests.conftest import free_port
from tests.factories import signed_in

WEBHOOK_SECRET = "receiver-shared-secret-1234"
ACCOUNT_KEY = base64.b64encode(b"k" * 64).decode()

# One valid config per type configured by a form, each with a secret that must never reach a page.
CONFIGS = {
    "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "webhook-secret-abcd1234"},
    "s3": {"bucket": "photos", "accessKey": "AKIAEXAMPLE", "secretKey": "s3-secret-key-wxyz9876"},
    "azure_blob": {
        "connectionString": f"DefaultEndpointsProtocol=https;AccountName=photos;AccountKey={ACCOUNT_KEY}",
        "container": "media",
    },
    "ftp": {"host": "127.0.0.1", "username": "apertur", "password": "ftp-password-qrst5678"},
    "webdav": {"url": "https://dav.example.com/files/", "username": "apertur", "password": "dav-password-mnop4321"},
}
FORM_TYPES = sorted(kind for kind in BACKENDS if not page_forms.is_oauth(kind))
OAUTH_TYPES = sorted(kind for kind in BACKENDS if page_forms.is_oauth(kind))


@pytest.fixture
def hook(owner, webhook_receiver) -> Destination:
    return services.destination_create(
        project=owner.project,
        type="webhook",
        name="Claims hook",
        config={"url": f"{webhook_receiver.url}/hook", "secret": WEBHOOK_SECRET},
    )


def url(owner, *rest: str) -> str:
    return "/".join([f"/projects/{owner.project.pk}/destinations", *rest])


def webhook_form(**fields) -> dict:
    return {"type": "webhook", "name": "New hook", "format": "multipart", **fields}


# (view, method, path after /destinations, form) → what owners and admins get; members get 403 (except the list),
# outsiders 404, anonymous visitors the sign-in page.
VIEWS = {
    "list": ("get", "", None, 200),
    "chooser": ("get", "/new", None, 200),
    "form": ("get", "/new?type=webhook", None, 200),
    "create": ("post", "/new", webhook_form(url="http://127.0.0.1:9/x", secret="s" * 12), 302),
    "edit": ("get", "/{id}/edit", None, 200),
    "save": ("post", "/{id}/edit", {"name": "Renamed", "url": "http://127.0.0.1:9/y", "format": "binary"}, 302),
    "test": ("post", "/{id}/test", {}, 302),
    "pause": ("post", "/{id}/active", {"isActive": "false"}, 302),
    "delete": ("post", "/{id}/delete", {}, 302),
}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("who", ["owner", "admin", "member", "outsider", "anonymous"])
def test_who_may_use_each_destination_page(owner, roles, hook, view, who):
    method, path, form, managers_get = VIEWS[view]
    client = Client() if who == "anonymous" else signed_in(roles[who])
    target = url(owner) + path.format(id=hook.pk)

    response = client.get(target) if method == "get" else client.post(target, form)

    expected = {
        "owner": managers_get,
        "admin": managers_get,
        "member": 200 if view == "list" else 403,
        "outsider": 404,
        "anonymous": 302,
    }[who]
    assert response.status_code == expected, response.content[:500]
    if who == "anonymous":
        assert response["Location"].startswith("/accounts/login/?next=")
    hook.refresh_from_db()
    changed = (hook.name, hook.config.get("format", "multipart"), hook.is_active, hook.deleted_at is None) != (
        "Claims hook",
        "multipart",
        True,
        True,
    )
    allowed = who in ("owner", "admin")
    assert changed == (view in ("save", "pause", "delete") and allowed)
    assert Destination.objects.filter(name="New hook").exists() == (view == "create" and allowed)
    if who in ("outsider", "anonymous"):
        assert b"Claims hook" not in response.content


def test_members_see_the_list_without_buttons(owner, roles, hook):
    page = signed_in(roles["member"]).get(url(owner)).content.decode()
    managed = signed_in(roles["admin"]).get(url(owner)).content.decode()

    assert "Claims hook" in page and "Claims hook" in managed
    for button in ("Edit Claims hook", "Test Claims hook", "Pause Claims hook", "Delete Claims hook"):
        assert button not in page and button in managed
    assert "Add a destination" not in page and "Add a destination" in managed


def test_the_list_shows_type_status_error_and_last_delivery_in_a_fixed_number_of_queries(owner, hook):
    client = signed_in(owner.user)
    with CaptureQueriesContext(connection) as one:
        client.get(url(owner))
    for number in range(6):
        destination = services.destination_create(
            project=owner.project, type="s3", name=f"Bucket {number}", config=CONFIGS["s3"]
        )
    Destination.objects.filter(pk=destination.pk).update(is_active=False, last_error="bucket vanished")
    Destination.objects.filter(pk=hook.pk).update(needs_reconnect=True)

    with CaptureQueriesContext(connection) as seven:
        page = client.get(url(owner)).content.decode()

    assert len(seven) == len(one) <= 6
    assert page.count('class="badge badge-ok">active') == 5
    assert 'class="badge badge-muted">paused' in page and "bucket vanished" in page
    assert 'class="badge badge-bad">needs reconnecting' in page
    assert page.count('<span class="type-mark type-s3" aria-hidden="true">S3</span>') == 6


def test_the_list_query_count_is_asserted(owner, hook, django_assert_max_num_queries):
    client = signed_in(owner.user)
    with django_assert_max_num_queries(6):
        assert client.get(url(owner)).status_code == 200


def test_an_empty_list_says_what_to_do(owner, roles):
    for_the_owner = signed_in(owner.user).get(url(owner)).content.decode()
    for_a_member = signed_in(roles["member"]).get(url(owner)).content.decode()

    assert 'class="empty"' in for_the_owner and "Add a destination" in for_the_owner
    assert "An owner or admin of the project adds them" in for_a_member


def test_the_chooser_lists_every_type(owner):
    page = signed_in(owner.user).get(url(owner, "new")).content.decode()

    for kind in BACKENDS:
        assert f"?type={kind}" in page and page_forms.type_name(kind) in page


@pytest.mark.parametrize("kind", FORM_TYPES)
def test_each_type_has_a_form_with_its_config_fields(owner, kind):
    page = signed_in(owner.user).get(url(owner, f"new?type={kind}")).content.decode()

    for field in page_forms.form_fields(kind):
        assert f'name="{field.name}"' in page
        assert f'<label for="field-{field.name}">{field.label}' in page
        assert f'id="help-{field.name}"' in page and field.help
    assert 'name="type" value="' + kind + '"' in page


def test_inputs_fit_their_fields():
    by_name = {field.name: field for field in page_forms.form_fields("ftp")}
    webhook = {field.name: field for field in page_forms.form_fields("webhook")}

    assert (by_name["password"].widget, by_name["privateKey"].widget) == ("password", "secret_textarea")
    assert (by_name["port"].widget, by_name["protocol"].widget) == ("number", "select")
    assert by_name["protocol"].choices == ("ftp", "ftps", "sftp")
    assert (webhook["url"].widget, webhook["customHeaders"].widget, webhook["secret"].widget) == (
        "url",
        "headers",
        "password",
    )


@pytest.mark.parametrize("kind", OAUTH_TYPES)
def test_an_oauth_type_goes_to_its_connect_page(owner, kind):
    response = signed_in(owner.user).get(url(owner, f"new?type={kind}"))

    assert response.status_code == 302
    assert response["Location"] == f"/destinations/oauth/{kind}/start?project={owner.project.pk}"


def test_an_oauth_destination_edits_its_folder_and_never_shows_its_token(owner):
    token = {"access_token": "access-token-9f8e7d6c", "refresh_token": "refresh-token-1a2b3c4d"}
    drive = services.destination_connect(project=owner.project, type="box", name="Box", token=token)
    client = signed_in(owner.user)

    form = client.get(url(owner, str(drive.pk), "edit")).content.decode()
    saved = client.post(url(owner, str(drive.pk), "edit"), {"name": "Box", "folderId": "123"})

    assert 'name="folderId"' in form and 'name="token"' not in form
    assert "access-token" not in form and "refresh-token" not in form and "9f8e" not in form
    assert saved.status_code == 302
    drive.refresh_from_db()
    assert drive.config["folderId"] == "123" and drive.secrets["token"]["access_token"] == token["access_token"]


def test_a_webhook_is_created_through_the_form(owner):
    response = signed_in(owner.user).post(
        url(owner, "new"),
        webhook_form(
            url="http://127.0.0.1:9/hook",
            secret="a-good-secret",
            format="json_base64",
            customHeaders="X-Team: claims\n\nX-Env: test",
        ),
    )

    assert response.status_code == 302 and response["Location"] == url(owner)
    created = Destination.objects.get(name="New hook")
    assert created.config == {
        "url": "http://127.0.0.1:9/hook",
        "format": "json_base64",
        "customHeaders": {"X-Team": "claims", "X-Env": "test"},
    }
    assert created.secrets == {"secret": "a-good-secret"}


def test_bad_config_is_shown_next_to_its_fields_keeping_what_was_typed_but_not_secrets(owner):
    response = signed_in(owner.user).post(
        url(owner, "new"),
        webhook_form(url="not a url at all", secret="short-typed-secret-x", format="carrier-pigeon"),
    )
    page = response.content.decode()

    assert response.status_code == 400
    assert not Destination.objects.exists()
    assert 'value="not a url at all"' in page
    assert "short-typed-secret-x" not in page
    url_block = page[page.index('id="field-url"') : page.index('id="field-secret"')]
    format_block = page[page.index('id="field-format"') : page.index('id="field-customHeaders"')]
    assert 'class="errorlist"' in url_block and "URL" in url_block
    assert 'class="errorlist"' in format_block and "multipart" in format_block


def test_a_missing_required_field_and_a_bad_header_line_are_named(owner):
    client = signed_in(owner.user)
    missing = client.post(url(owner, "new"), webhook_form(url="http://127.0.0.1:9/x")).content.decode()
    headers = client.post(
        url(owner, "new"),
        webhook_form(name="", url="http://127.0.0.1:9/x", secret="s" * 12, customHeaders="no colon"),
    ).content.decode()

    secret_block = missing[missing.index('id="field-secret"') : missing.index('id="field-format"')]
    assert "Field required" in secret_block
    assert "line 1: write each header as Name: value" in headers
    assert "This field may not be blank." in headers[headers.index('id="field-name"') : headers.index('id="field-url"')]
    assert not Destination.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x" * 5000},
        {"name": "nul\x00name"},
        {"url": "http://127.0.0.1:9/\x00"},
        {"unknownField": "ignored", "type": "webhook", "url": "", "secret": ""},
        {"port": "twenty-one"},
    ],
)
def test_bad_input_is_a_form_error_never_a_500(owner, fields):
    kind = "ftp" if "port" in fields else "webhook"
    form = {**webhook_form(url="http://127.0.0.1:9/x", secret="s" * 12), "type": kind, **fields}

    response = signed_in(owner.user).post(url(owner, "new"), form)

    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert not Destination.objects.exists()


@pytest.mark.parametrize("path", ["not-a-uuid/edit", "00000000-0000-0000-0000-000000000000/edit", "%00/edit"])
def test_unknown_or_malformed_ids_are_404(owner, path):
    client = signed_in(owner.user)

    assert client.get(url(owner, path)).status_code == 404
    assert client.get(url(owner, "new?type=no_such_type")).status_code == 404
    assert client.get(f"/projects/not-a-project/destinations/{path}").status_code == 404


def test_another_projects_destination_is_404(owner, outsider):
    theirs = services.destination_create(project=outsider.project, type="s3", name="Theirs", config=CONFIGS["s3"])
    client = signed_in(owner.user)

    for path in ("edit", "test", "active", "delete"):
        method = client.get if path == "edit" else client.post
        assert method(url(owner, str(theirs.pk), path), {"isActive": "false"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active and theirs.deleted_at is None


def test_secrets_never_appear_in_any_page(owner):
    client = signed_in(owner.user)
    made = {
        kind: services.destination_create(project=owner.project, type=kind, name=f"My {kind}", config=config)
        for kind, config in CONFIGS.items()
    }
    secrets = [value for config in CONFIGS.values() for key, value in config.items() if "ecret" in key or "ass" in key]
    secrets.append(CONFIGS["azure_blob"]["connectionString"])

    pages = [client.get(url(owner)).content.decode()]
    pages += [client.get(url(owner, str(destination.pk), "edit")).content.decode() for destination in made.values()]
    refused = client.post(url(owner, str(made["webhook"].pk), "edit"), {"name": "", "url": "bad"})
    pages.append(refused.content.decode())

    assert refused.status_code == 400
    for page in pages:
        for secret in secrets:
            assert secret not in page and secret[-4:] not in page and ACCOUNT_KEY[:12] not in page
    assert all('type="password"' in page for page in pages[1:])


def test_editing_with_an_empty_secret_keeps_it_and_a_new_one_replaces_it(owner, hook):
    client = signed_in(owner.user)
    form = client.get(url(owner, str(hook.pk), "edit")).content.decode()

    kept = client.post(
        url(owner, str(hook.pk), "edit"),
        {"name": "Renamed hook", "url": "http://127.0.0.1:9/new", "secret": "", "format": "binary"},
    )
    hook.refresh_from_db()
    after_keep = (hook.name, hook.config["url"], hook.config["format"], hook.secrets["secret"])
    replaced = client.post(
        url(owner, str(hook.pk), "edit"),
        {"name": "Renamed hook", "url": "http://127.0.0.1:9/new", "secret": "a-brand-new-secret", "format": "binary"},
    )
    hook.refresh_from_db()

    assert "A value is stored: leave this empty to keep it." in form
    assert re.search(r'name="url" value="http://127\.0\.0\.1:\d+/hook"', form)
    assert kept.status_code == replaced.status_code == 302
    assert after_keep == ("Renamed hook", "http://127.0.0.1:9/new", "binary", WEBHOOK_SECRET)
    assert hook.secrets["secret"] == "a-brand-new-secret"


def test_an_optional_stored_secret_can_be_removed(owner):
    config = {**CONFIGS["ftp"], "protocol": "sftp", "password": "sftp-password-1"}
    server = services.destination_create(project=owner.project, type="ftp", name="SFTP", config=config)
    client = signed_in(owner.user)
    form = {"name": "SFTP", "host": "127.0.0.1", "username": "apertur", "protocol": "sftp"}

    refused = client.post(url(owner, str(server.pk), "edit"), {**form, "remove-password": "on"})
    server.refresh_from_db()

    assert refused.status_code == 400  # neither a password nor a key is left: the model's own check
    assert "password" in refused.content.decode() and server.secrets["password"] == "sftp-password-1"


def test_the_test_button_shows_success_against_a_receiver(owner, hook, webhook_receiver):
    client = signed_in(owner.user)

    as_json = client.post(url(owner, str(hook.pk), "test"), HTTP_ACCEPT="application/json")
    as_form = client.post(url(owner, str(hook.pk), "test"), follow=True)

    assert as_json.status_code == 200
    assert as_json.json()["success"] is True and as_json.json()["status"] == 200
    assert "Test of Claims hook:" in as_form.content.decode()
    assert len(webhook_receiver.wait_for_requests(2)) == 2


def test_the_test_button_shows_the_failure_of_a_refused_connection(owner):
    refused = services.destination_create(
        project=owner.project,
        type="webhook",
        name="Nobody home",
        config={"url": f"http://127.0.0.1:{free_port()}/hook", "secret": WEBHOOK_SECRET},
    )
    client = signed_in(owner.user)

    as_json = client.post(url(owner, str(refused.pk), "test"), HTTP_ACCEPT="application/json").json()
    page = client.post(url(owner, str(refused.pk), "test"), follow=True).content.decode()

    assert as_json["success"] is False and as_json["error"]
    assert "Test of Nobody home failed:" in page
    refused.refresh_from_db()
    assert refused.last_error and refused.last_error in page


def test_pause_resume_and_delete(owner, hook):
    client = signed_in(owner.user)

    paused = client.post(url(owner, str(hook.pk), "active"), {"isActive": "false"}, follow=True).content.decode()
    assert not Destination.objects.get(pk=hook.pk).is_active and "Resume Claims hook" in paused
    resumed = client.post(url(owner, str(hook.pk), "active"), {"isActive": "true"}, follow=True).content.decode()
    assert Destination.objects.get(pk=hook.pk).is_active and "Pause Claims hook" in resumed
    assert client.post(url(owner, str(hook.pk), "active"), {"isActive": "maybe"}).status_code == 400

    deleted = client.post(url(owner, str(hook.pk), "delete"), follow=True).content.decode()

    assert Destination.objects.get(pk=hook.pk).deleted_at is not None
    assert "is deleted" in deleted and "Delete Claims hook" not in deleted
    assert client.post(url(owner, str(hook.pk), "delete")).status_code == 404


def test_every_post_needs_the_csrf_token(owner, hook):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)

    for path in ("test", "active", "delete", "edit"):
        assert client.post(url(owner, str(hook.pk), path), {"isActive": "false"}).status_code == 403
    assert client.post(url(owner, "new"), webhook_form(url="http://127.0.0.1:9/x", secret="s" * 12)).status_code == 403
    hook.refresh_from_db()
    assert hook.is_active and hook.deleted_at is None


def test_a_header_given_twice_is_named_not_silently_dropped(owner, api_client):
    client = signed_in(owner.user)
    page = client.post(
        url(owner, "new"),
        webhook_form(url="http://127.0.0.1:9/x", secret="s" * 12, customHeaders="X-A: first\nx-a: second"),
    ).content.decode()
    through_api = api_client.post(
        f"/api/v1/projects/{owner.project.pk}/destinations",
        {
            "type": "webhook",
            "name": "Hook",
            "config": {"url": "http://127.0.0.1:9/x", "secret": "s" * 12, "customHeaders": {"X-A": "1", "x-a": "2"}},
        },
        format="json",
        **owner.auth,
    )

    assert "line 2: x-a is given twice" in page
    assert through_api.status_code == 400 and "given twice" in str(through_api.json()["fields"])
    assert not Destination.objects.exists()
