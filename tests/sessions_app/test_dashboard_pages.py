"""A project's sessions in the dashboard (sessions_app/dashboard.py): who sees and does what, the filtered list,
a session made from the form with the API's checks, the detail with its QR code, thumbnails and delivery matrix,
closing, Retry, and a fixed number of queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery.models import Delivery
from sessions_app import services
from sessions_app.models import Image, UploadSession
from tests.factories import image_bytes, signed_in
from tests.sessions_app.helpers import upload, webhook_destination

ALL_TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic"]


def make_session(persona, *, destinations=(), **settings) -> UploadSession:
    settings.setdefault("long_polling", not destinations)
    return services.session_create(
        api_key=None,
        project=persona.project,
        destination_ids=[str(destination.pk) for destination in destinations] or None,
        **settings,
    )


def add_images(api_client, session: UploadSession, count: int) -> list[Image]:
    for index in range(count):
        response = upload(api_client, session.pk, image_bytes(), name=f"photo-{index}.jpg")
        assert response.status_code == 201, response.content
    return list(session.images.order_by("index"))


def fail(delivery: Delivery, error: str = "HTTP 500 from the webhook") -> None:
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempts=6, last_error=error)


@pytest.fixture
def with_failure(owner, api_client):
    """A session of the owner's project with one photo whose delivery to a webhook failed."""
    destination = webhook_destination(owner)
    session = make_session(owner, destinations=[destination], label="Claim 4711", tags=["claim:4711"])
    (image,) = add_images(api_client, session, 1)
    delivery = image.deliveries.get()
    fail(delivery)
    return session, image, delivery


def pages(owner, session, image, delivery) -> dict[str, str]:
    base = f"/projects/{owner.project.pk}/sessions"
    return {
        "list": base,
        "new": f"{base}/new",
        "detail": f"{base}/{session.pk}",
        "matrix": f"{base}/{session.pk}/matrix",
        "qr": f"{base}/{session.pk}/qr",
        "thumbnail": f"{base}/{session.pk}/images/{image.pk}/thumbnail",
        "close": f"{base}/{session.pk}/close",
        "retry": f"{base}/{session.pk}/deliveries/{delivery.pk}/retry",
    }


READS = ("list", "new", "detail", "matrix", "qr", "thumbnail")


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
def test_every_member_reads_every_page(owner, roles, with_failure, who):
    client = signed_in(roles[who])

    answers = {name: client.get(url).status_code for name, url in pages(owner, *with_failure).items() if name in READS}

    assert answers == dict.fromkeys(READS, 200)


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
def test_every_member_creates_closes_and_retries(owner, roles, with_failure, who):
    session, _, delivery = with_failure
    client = signed_in(roles[who])
    urls = pages(owner, *with_failure)

    made = client.post(urls["new"], {"label": f"by {who}", "long_polling": "on", "allowed_mime_types": ALL_TYPES})
    retried = client.post(urls["retry"])
    closed = client.post(urls["close"])

    created = UploadSession.objects.get(label=f"by {who}")
    assert made.status_code == 302 and made["Location"] == f"{urls['list']}/{created.pk}"
    assert created.api_key is None and created.project == owner.project
    assert retried.status_code == 302 and Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.PENDING
    assert closed.status_code == 302 and UploadSession.objects.get(pk=session.pk).close_reason == "completed"


def test_an_outsider_gets_404_everywhere_and_changes_nothing(owner, roles, with_failure):
    _, _, delivery = with_failure
    client = signed_in(roles["outsider"])
    urls = pages(owner, *with_failure)

    reads = {name: client.get(url).status_code for name, url in urls.items() if name in READS}
    writes = {name: client.post(urls[name], {"long_polling": "on"}).status_code for name in ("new", "close", "retry")}

    assert reads == dict.fromkeys(READS, 404)
    assert writes == dict.fromkeys(("new", "close", "retry"), 404)
    assert UploadSession.objects.count() == 1 and UploadSession.objects.get().closed_at is None
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


def test_an_anonymous_visitor_is_sent_to_sign_in_for_every_page(owner, with_failure):
    client = Client()
    urls = pages(owner, *with_failure)

    answers = [client.get(url) for name, url in urls.items() if name in READS]
    answers += [client.post(urls[name]) for name in ("new", "close", "retry")]

    assert all(answer.status_code == 302 for answer in answers)
    assert all(answer["Location"].startswith("/accounts/login/?next=") for answer in answers)
    assert UploadSession.objects.get().closed_at is None


def test_writes_need_post_and_reads_refuse_it(owner, with_failure):
    client = signed_in(owner.user)
    urls = pages(owner, *with_failure)

    assert client.get(urls["close"]).status_code == 405
    assert client.get(urls["retry"]).status_code == 405
    assert client.post(urls["detail"]).status_code == 405
    assert client.post(urls["list"]).status_code == 405


def test_writes_need_the_csrf_token(owner, with_failure):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)
    urls = pages(owner, *with_failure)

    assert client.post(urls["close"]).status_code == 403
    assert client.post(urls["retry"]).status_code == 403
    assert client.post(urls["new"], {"long_polling": "on"}).status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "/projects/not-a-uuid/sessions",
        "/projects/00000000-0000-0000-0000-000000000000/sessions",
        "/projects/{project}/sessions/sess_unknown",
        "/projects/{project}/sessions/sess_%00nul",
        "/projects/{project}/sessions/{session}/images/img_unknown/thumbnail",
        "/projects/{project}/sessions/{session}/images/{other_image}/thumbnail",
        "/projects/{project}/sessions/{other_session}/qr",
        "/projects/{project}/sessions/{other_session}/matrix",
    ],
)
def test_unknown_malformed_and_foreign_ids_are_404_pages(owner, outsider, api_client, with_failure, url):
    foreign = make_session(outsider)
    (foreign_image,) = add_images(api_client, foreign, 1)
    session = with_failure[0]

    response = signed_in(owner.user).get(
        url.format(project=owner.project.pk, session=session.pk, other_session=foreign.pk, other_image=foreign_image.pk)
    )

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- the list ---------------------------------------------------------------------------------------------


def test_the_list_shows_each_session_newest_first_with_its_delivery_summary(owner, api_client):
    destination, second = webhook_destination(owner), webhook_destination(owner, "second")
    older = make_session(owner, destinations=[destination, second], label="Older one")
    images = add_images(api_client, older, 2)
    fail(images[0].deliveries.get(destination=destination))
    Delivery.objects.filter(image=images[1], destination=destination).update(status=Delivery.Status.DELIVERED)
    UploadSession.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=1))
    make_session(owner, label="Newer one")

    page = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions").content.decode()

    assert page.index("Newer one") < page.index("Older one")
    row = page[page.index("Older one") :].split("</tr>")[0]
    assert "1 delivered" in row and "1 failed" in row and "2 pending" in row
    assert "2 / 10" in row and 'data-status="uploading"' in row


def test_the_list_filters_by_status_tag_dates_and_key(owner, api_client):
    by_key = services.session_create(api_key=owner.api_key, long_polling=True, label="By key", tags=["claim:1"])
    dashboard = make_session(owner, label="From dashboard", tags=["claim:2", "urgent"])
    closed = make_session(owner, label="Closed one", tags=["claim:10"])
    services.session_complete(session=closed)
    UploadSession.objects.filter(pk=dashboard.pk).update(created_at=timezone.now() - timedelta(days=3))
    past_expiry = make_session(owner, label="Past expiry")
    UploadSession.objects.filter(pk=past_expiry.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    client = signed_in(owner.user)
    today = timezone.now().date()

    def listed(**query) -> set[str]:
        response = client.get(f"/projects/{owner.project.pk}/sessions", query)
        assert response.status_code == 200, response.content
        labels = ("By key", "From dashboard", "Closed one", "Past expiry")
        return {label for label in labels if label in response.content.decode()}

    assert listed(tag="claim:1") == {"By key"}  # exactly the tag, not every tag beginning so
    assert listed(tag="urgent") == {"From dashboard"}
    assert listed(status="completed") == {"Closed one"}
    assert listed(status="expired") == {"Past expiry"}  # shown as expired before the sweeper closes it
    assert listed(status="pending") == {"By key", "From dashboard"}
    assert listed(key=str(owner.api_key.pk)) == {"By key"}
    assert listed(key="none") == {"From dashboard", "Closed one", "Past expiry"}
    assert listed(created_to=str(today - timedelta(days=1))) == {"From dashboard"}
    assert listed(created_from=str(today), status="pending") == {"By key"}
    assert listed() == {"By key", "From dashboard", "Closed one", "Past expiry"}
    assert by_key.api_key == owner.api_key


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"status": "lost"}, "status", "Select a valid choice"),
        ({"created_from": "yesterday"}, "created_from", "Enter a valid date"),
        ({"created_from": "2026-02-31"}, "created_from", "Enter a valid date"),
        ({"created_from": "2026-11-20", "created_to": "2026-11-01"}, "created_to", "before its start"),
        ({"key": "not-a-key"}, "key", "Not an API key of this project"),
        ({"key": "00000000-0000-0000-0000-000000000000"}, "key", "Not an API key of this project"),
        ({"tag": "x" * 129}, "tag", "at most 128"),
        ({"tag": "a\x00b"}, "tag", "Null characters are not allowed"),
        ({"page": "0"}, "page", "greater than or equal to 1"),
        ({"page": "many"}, "page", "Enter a whole number"),
        ({"page": "9" * 40}, "page", "less than or equal to"),
    ],
)
def test_a_bad_filter_is_a_message_not_an_error_page(owner, query, field, message):
    make_session(owner, label="Still listed")

    response = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions", query)

    page = response.content.decode()
    assert response.status_code == 400
    assert message in page
    assert "Still listed" in page  # the refused filter filters nothing


def test_a_foreign_key_is_no_filter_of_this_project(owner, outsider):
    response = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions", {"key": str(outsider.api_key.pk)})

    assert response.status_code == 400 and "Not an API key of this project" in response.content.decode()


def test_the_list_pages_through_sessions_and_keeps_the_filters(owner):
    for index in range(27):
        make_session(owner, label=f"session {index:02}", tags=["batch"])
    client = signed_in(owner.user)

    first = client.get(f"/projects/{owner.project.pk}/sessions", {"tag": "batch"}).content.decode()
    second = client.get(f"/projects/{owner.project.pk}/sessions", {"tag": "batch", "page": "2"}).content.decode()

    assert first.count("<tr>") - 1 == 25 and "27 sessions" in first
    assert "tag=batch&amp;page=2" in first
    assert second.count("<tr>") - 1 == 2


def test_the_list_costs_the_same_queries_for_many_sessions_as_for_one(owner, api_client, django_assert_max_num_queries):
    destination = webhook_destination(owner)
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions"
    add_images(api_client, make_session(owner, destinations=[destination]), 2)
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for_one = len(one.captured_queries)  # now: the next request resets the connection's query log
    for _ in range(6):
        add_images(api_client, make_session(owner, destinations=[destination]), 2)
    services.session_create(api_key=owner.api_key, long_polling=True)

    with django_assert_max_num_queries(for_one):
        response = client.get(url)

    assert response.status_code == 200 and "8 sessions" in response.content.decode()
    assert for_one <= 9


# --- a new session ------------------------------------------------------------------------------------------


def test_the_form_offers_the_projects_active_destinations_and_keys(owner, outsider):
    active = webhook_destination(owner, "Active hook")
    webhook_destination(owner, "Switched off").__class__.objects.filter(name="Switched off").update(is_active=False)
    webhook_destination(outsider, "Foreign hook")

    page = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions/new").content.decode()

    assert f'value="{active.pk}"' in page and "Switched off" not in page and "Foreign hook" not in page
    assert f'value="{owner.api_key.pk}"' in page and str(outsider.api_key.pk) not in page


def test_a_session_made_from_the_form_has_what_was_asked(owner):
    destination = webhook_destination(owner)
    client = signed_in(owner.user)

    made = client.post(
        f"/projects/{owner.project.pk}/sessions/new",
        {
            "label": "Claim 4711",
            "destination_ids": [str(destination.pk)],
            "tags": "claim:4711\nurgent\n",
            "expires_in_hours": "2",
            "max_images": "5",
            "allowed_mime_types": ["image/jpeg", "image/png"],
            "max_image_dimension": "2000",
            "password": "open sesame",
        },
        follow=True,
    )

    session = UploadSession.objects.get(label="Claim 4711")
    assert made.status_code == 200 and session.pk in made.content.decode()
    assert list(session.destinations.all()) == [destination]
    assert (session.tags, session.max_images, session.max_image_dimension) == (["claim:4711", "urgent"], 5, 2000)
    assert session.allowed_mime_types == ["image/jpeg", "image/png"]
    assert session.password_protected and not session.long_polling and session.api_key is None
    assert timedelta(hours=1, minutes=59) < session.expires_at - timezone.now() <= timedelta(hours=2)


def test_a_session_may_take_the_limits_and_defaults_of_a_key(owner):
    destination = webhook_destination(owner)
    owner.api_key.default_destinations.set([destination])
    owner.api_key.__class__.objects.filter(pk=owner.api_key.pk).update(max_images=3, allowed_mime_types=["image/png"])

    made = signed_in(owner.user).post(
        f"/projects/{owner.project.pk}/sessions/new",
        {"label": "with key", "api_key": str(owner.api_key.pk), "allowed_mime_types": ALL_TYPES},
    )

    session = UploadSession.objects.get(label="with key")
    assert made.status_code == 302
    assert session.api_key == owner.api_key and list(session.destinations.all()) == [destination]
    assert (session.max_images, session.allowed_mime_types) == (3, ["image/png"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"label": "x" * 201}, "Ensure this field has no more than 200 characters."),
        ({"label": "a\x00b"}, "Null characters are not allowed."),
        ({"tags": "x" * 129}, "item 1: Ensure this field has no more than 128 characters."),
        ({"tags": "\n".join(f"t{index}" for index in range(21))}, "Ensure this field has no more than 20 elements."),
        ({"expires_in_hours": "169"}, "Ensure this value is less than or equal to 168."),
        ({"expires_in_hours": "soon"}, "A valid integer is required."),
        ({"max_images": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"max_images": "101"}, "max_images may be at most 100."),
        ({"max_image_dimension": "9" * 30}, "Ensure this value is less than or equal to"),
        ({"password": "abc"}, "Ensure this field has at least 4 characters."),
        ({"allowed_mime_types": []}, "This list may not be empty."),
        ({"allowed_mime_types": ["image/gif"]}, "&quot;image/gif&quot; is not a valid choice."),
        ({"long_polling": ""}, "A session needs at least one destination or long polling"),
        ({"destination_ids": ["not-a-destination"]}, "unknown or inactive destination: not-a-destination"),
        ({"api_key": "not-a-key"}, "Not an active API key of this project."),
    ],
)
def test_bad_input_shows_the_apis_messages_and_makes_nothing(owner, fields, message):
    body = {"label": "refused", "long_polling": "on", "allowed_mime_types": ALL_TYPES, **fields}

    response = signed_in(owner.user).post(f"/projects/{owner.project.pk}/sessions/new", body)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not UploadSession.objects.exists()


def test_a_foreign_destination_or_key_is_refused(owner, outsider):
    foreign = webhook_destination(outsider)
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/new"

    by_destination = client.post(url, {"destination_ids": [str(foreign.pk)], "allowed_mime_types": ALL_TYPES})
    by_key = client.post(
        url, {"long_polling": "on", "api_key": str(outsider.api_key.pk), "allowed_mime_types": ALL_TYPES}
    )

    assert by_destination.status_code == 400 and str(foreign.pk) in by_destination.content.decode()
    assert by_key.status_code == 400 and "Not an active API key of this project." in by_key.content.decode()
    assert not UploadSession.objects.exists()


def test_a_refused_form_keeps_what_was_filled_in(owner):
    destination = webhook_destination(owner)

    page = (
        signed_in(owner.user)
        .post(
            f"/projects/{owner.project.pk}/sessions/new",
            {
                "label": "kept",
                "destination_ids": [str(destination.pk)],
                "allowed_mime_types": ["image/png"],
                "long_polling": "on",
                "max_images": "0",
                "tags": "claim:9",
            },
        )
        .content.decode()
    )

    assert 'value="kept"' in page and f'value="{destination.pk}" checked' in page
    assert 'value="image/png" checked' in page and 'value="image/jpeg" checked' not in page
    assert 'name="long_polling" checked' in page and "claim:9</textarea>" in page


# --- the detail ------------------------------------------------------------------------------------------------


def test_the_detail_shows_link_qr_thumbnails_and_the_matrix(owner, api_client, with_failure, settings):
    session, image, delivery = with_failure
    client = signed_in(owner.user)

    page = client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}").content.decode()
    qr = client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}/qr")
    thumbnail = client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}/images/{image.pk}/thumbnail")

    assert f'value="{settings.APERTUR_PUBLIC_URL}/u/{session.pk}"' in page
    assert "Claim 4711" in page and "claim:4711" in page and "Copy" in page
    assert f'src="/projects/{owner.project.pk}/sessions/{session.pk}/qr"' in page
    assert qr["Content-Type"] == "image/svg+xml" and b"<svg" in qr.content
    assert thumbnail["Content-Type"] == "image/jpeg" and thumbnail.content.startswith(b"\xff\xd8")
    cell = page.split(f'data-delivery="{delivery.pk}"')[1].split("</td>")[0]
    assert 'data-status="failed"' in cell and "6 attempts" in cell and "HTTP 500 from the webhook" in cell
    assert "Retry" in cell and "photo-0.jpg" in page


def test_an_image_whose_bytes_are_gone_is_shown_by_its_name(owner, with_failure):
    session, image, _ = with_failure
    Image.objects.filter(pk=image.pk).update(staged_deleted_at=timezone.now())
    client = signed_in(owner.user)

    page = client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}").content.decode()
    thumbnail = client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}/images/{image.pk}/thumbnail")

    assert "photo-0.jpg" in page and "/thumbnail" not in page
    assert thumbnail.status_code == 404


def test_an_unreadable_staged_file_has_no_thumbnail_but_no_error(owner, with_failure):
    from django.core.files.storage import default_storage

    session, image, _ = with_failure
    with default_storage.open(image.staged_name, "wb") as staged:
        staged.write(b"not an image any more")

    response = signed_in(owner.user).get(
        f"/projects/{owner.project.pk}/sessions/{session.pk}/images/{image.pk}/thumbnail"
    )

    assert response.status_code == 404


def test_the_detail_and_matrix_cost_the_same_queries_whatever_images_and_destinations(
    owner, api_client, django_assert_max_num_queries
):
    client = signed_in(owner.user)
    small = make_session(owner, destinations=[webhook_destination(owner)])
    add_images(api_client, small, 1)
    large = make_session(owner, destinations=[webhook_destination(owner, f"hook {n}") for n in range(3)])
    add_images(api_client, large, 5)

    counts = {}
    for session in (small, large):
        for view in ("", "/matrix"):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(f"/projects/{owner.project.pk}/sessions/{session.pk}{view}").status_code == 200
            counts[session.pk, view] = len(queries.captured_queries)

    assert counts[small.pk, ""] == counts[large.pk, ""] <= 10
    assert counts[small.pk, "/matrix"] == counts[large.pk, "/matrix"] <= 9


def test_the_matrix_answers_204_while_nothing_changed(owner, api_client, with_failure):
    session = with_failure[0]
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/matrix"
    stamp = UploadSession.objects.get(pk=session.pk).last_changed_at.isoformat()

    unchanged = client.get(url, {"since": stamp})
    add_images(api_client, session, 1)
    changed = client.get(url, {"since": stamp})

    assert unchanged.status_code == 204
    assert changed.status_code == 200 and "photo-0.jpg" in changed.content.decode()
    assert changed.content.decode().count("data-image=") == 2


# --- close and retry -------------------------------------------------------------------------------------------


def test_closing_a_session_stops_uploads_and_hides_the_button(owner, api_client, with_failure):
    session = with_failure[0]
    client = signed_in(owner.user)

    closed = client.post(f"/projects/{owner.project.pk}/sessions/{session.pk}/close", follow=True)
    again = client.post(f"/projects/{owner.project.pk}/sessions/{session.pk}/close")

    assert closed.status_code == 200 and "Close session" not in closed.content.decode()
    assert upload(api_client, session.pk, image_bytes()).status_code == 409
    assert again.status_code == 302  # closing twice is harmless, as completing twice is


def test_closing_an_expired_session_is_a_clear_refusal(owner):
    session = make_session(owner)
    UploadSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = signed_in(owner.user).post(f"/projects/{owner.project.pk}/sessions/{session.pk}/close")

    assert response.status_code == 410 and "This upload session has expired." in response.content.decode()


def test_retry_of_a_delivery_that_did_not_fail_is_a_clear_refusal(owner, with_failure):
    session, _, delivery = with_failure
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.DELIVERED)
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/deliveries/{delivery.pk}/retry"

    page = client.post(url)
    scripted = client.post(url, HTTP_X_REQUESTED_WITH="fetch")

    assert page.status_code == 409 and page["Content-Type"].startswith("text/html")
    assert "Only failed deliveries can be retried; this one is delivered." in page.content.decode()
    assert scripted.status_code == 409 and scripted.content.decode().startswith("Only failed deliveries")
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.DELIVERED


def test_retry_by_script_answers_204_and_the_matrix_shows_it_pending(owner, with_failure):
    session, _, delivery = with_failure
    client = signed_in(owner.user)
    base = f"/projects/{owner.project.pk}/sessions/{session.pk}"

    answer = client.post(f"{base}/deliveries/{delivery.pk}/retry", HTTP_X_REQUESTED_WITH="fetch")
    matrix = client.get(f"{base}/matrix").content.decode()

    assert answer.status_code == 204
    cell = matrix.split(f'data-delivery="{delivery.pk}"')[1].split("</td>")[0]
    assert 'data-status="pending"' in cell and "Retry" not in cell


@pytest.mark.parametrize("delivery_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "a\x00b"])
def test_retry_of_an_unknown_delivery_is_404(owner, with_failure, delivery_id):
    session = with_failure[0]

    response = signed_in(owner.user).post(
        f"/projects/{owner.project.pk}/sessions/{session.pk}/deliveries/{delivery_id}/retry"
    )

    assert response.status_code == 404


def test_retry_of_another_sessions_delivery_is_404(owner, api_client, with_failure):
    _, _, delivery = with_failure
    other = make_session(owner)

    response = signed_in(owner.user).post(
        f"/projects/{owner.project.pk}/sessions/{other.pk}/deliveries/{delivery.pk}/retry"
    )

    assert response.status_code == 404 and Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED


@pytest.mark.parametrize("tag", ['café "quoted"', "a%b_c", "x' OR '1'='1", "[1]"])
def test_a_tag_with_quotes_wildcards_or_accents_matches_itself_only(owner, tag):
    make_session(owner, label="The one", tags=[tag])
    make_session(owner, label="Another", tags=["café", "a%b", "[1]x"])

    page = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions", {"tag": tag}).content.decode()

    assert "The one" in page and "Another" not in page


# --- changing a session ---------------------------------------------------------------------------------


def edit_form(**fields) -> dict:
    return {"max_images": "10", "allowed_mime_types": ALL_TYPES, "password_change": "keep", **fields}


@pytest.mark.parametrize(
    ("who", "status"), [("owner", 302), ("admin", 302), ("member", 302), ("outsider", 404), ("anonymous", 302)]
)
def test_who_changes_a_session(owner, roles, who, status):
    session = make_session(owner)
    client = Client() if who == "anonymous" else signed_in(roles[who])
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/edit"

    page = client.get(url)
    saved = client.post(url, edit_form(max_images="7"))

    assert page.status_code == (200 if status == 302 and who != "anonymous" else status)
    assert saved.status_code == status
    session.refresh_from_db()
    assert (session.max_images == 7) == (who in ("owner", "admin", "member"))
    if who == "anonymous":
        assert saved["Location"].startswith("/accounts/login/")


def test_a_change_sets_limits_expiry_and_password_and_reopens_a_full_session(owner):
    session = make_session(owner, max_images=1)
    UploadSession.objects.filter(pk=session.pk).update(
        images_count=1, closed_at=timezone.now(), close_reason=UploadSession.CloseReason.FULL
    )
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/edit"
    later = (timezone.now() + timedelta(hours=30)).replace(second=0, microsecond=0)

    saved = client.post(
        url,
        edit_form(
            max_images="5",
            expires_at=later.strftime("%Y-%m-%dT%H:%M"),
            allowed_mime_types=["image/jpeg"],
            max_image_dimension="1600",
            password_change="set",
            password="open sesame",
        ),
    )
    session.refresh_from_db()
    removed = client.post(url, edit_form(max_images="5", password_change="remove"))

    assert saved.status_code == 302
    assert (session.max_images, session.closed_at, session.expires_at) == (5, None, later)
    assert session.allowed_mime_types == ["image/jpeg"] and session.max_image_dimension == 1600
    assert session.password_hash
    assert removed.status_code == 302 and UploadSession.objects.get(pk=session.pk).password_hash == ""


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_images": "0"}, "max_images"),
        ({"max_images": "lots"}, "max_images"),
        ({"expires_at": "not a date"}, "expires_at"),
        ({"expires_at": "2001-01-01T00:00"}, "expires_at"),
        ({"allowed_mime_types": []}, "allowed_mime_types"),
        ({"password_change": "set", "password": "abc"}, "password"),
        ({"password_change": "set", "password": "nul\x00word"}, "password"),
        ({"max_image_size_mb": "-3"}, "max_image_size_mb"),
    ],
)
def test_a_refused_change_names_its_field_and_changes_nothing(owner, fields, field):
    session = make_session(owner)
    before = (session.max_images, session.expires_at, session.password_hash)

    response = signed_in(owner.user).post(
        f"/projects/{owner.project.pk}/sessions/{session.pk}/edit", edit_form(**fields)
    )

    assert response.status_code == 400
    assert 'id="session-' in response.content.decode() and "errorlist" in response.content.decode()
    session.refresh_from_db()
    assert (session.max_images, session.expires_at, session.password_hash) == before


def test_a_thumbnail_is_made_once_in_a_decoder_and_goes_with_the_staged_bytes(owner, with_failure, monkeypatch):
    from django.core.files.storage import default_storage

    from sessions_app import decoding
    from sessions_app.services import images_purge_staged

    session, image, _ = with_failure
    made = []
    pool = decoding.decode_pool()
    real = pool.thumbnail
    monkeypatch.setattr(pool, "thumbnail", lambda *args, **kwargs: made.append(1) or real(*args, **kwargs))
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/images/{image.pk}/thumbnail"

    first, second = client.get(url), client.get(url)

    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert first.content.startswith(b"\xff\xd8") and len(made) == 1
    assert default_storage.exists(f"{image.staged_name}.thumb.jpg")
    monkeypatch.setattr("django.conf.settings.APERTUR_STAGING_RETENTION_DAYS", -1)
    Image.objects.filter(pk=image.pk).update(acknowledged_at=timezone.now())
    images_purge_staged()
    assert not default_storage.exists(f"{image.staged_name}.thumb.jpg")


def test_a_file_that_times_out_in_the_decoder_is_not_decoded_again(owner, with_failure, monkeypatch):
    from sessions_app import decoding

    session, image, _ = with_failure
    calls = []

    def too_slow(*args, **kwargs):
        calls.append(1)
        raise decoding.DecodeTimedOut

    monkeypatch.setattr(decoding.decode_pool(), "thumbnail", too_slow)
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/{session.pk}/images/{image.pk}/thumbnail"

    answers = [client.get(url).status_code for _ in range(3)]

    assert answers == [404, 404, 404] and len(calls) == 1


@pytest.mark.parametrize("query", [{"created_to": "9999-12-31"}, {"created_from": "0001-01-01"}])
def test_the_ends_of_the_calendar_are_filters_not_errors(owner, query):
    make_session(owner, label="Claim 1")

    response = signed_in(owner.user).get(f"/projects/{owner.project.pk}/sessions", query)

    assert response.status_code == 200 and "Claim 1" in response.content.decode()


def test_sessions_made_in_the_dashboard_count_against_the_users_api_budget(owner, settings, monkeypatch):
    monkeypatch.setitem(settings.APERTUR_RATE_LIMITS, "session_create", 2)
    client = signed_in(owner.user)
    url = f"/projects/{owner.project.pk}/sessions/new"
    form = {"long_polling": "on", "allowed_mime_types": ALL_TYPES}

    answers = [client.post(url, form).status_code for _ in range(3)]

    assert answers == [302, 302, 429]
    assert UploadSession.objects.count() == 2
