"""A project's overview (projects/overview.py, `/projects/<id>`): who sees it, the counters, the chart of the last
14 days' deliveries by outcome (numbers right for seeded days, days without deliveries included), the latest
failures linking to their sessions, and a fixed number of queries."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from delivery.models import Delivery
from delivery.overview_selectors import DayTally
from destinations.models import Destination
from projects.overview import BOTTOM, HEIGHT, TOP, _scale_top, delivery_chart
from sessions_app.models import Image, UploadSession
from tests.factories import make_persona, signed_in
from tests.sessions_app.helpers import webhook_destination


def overview_url(persona) -> str:
    return f"/projects/{persona.project.pk}"


def start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=1, microsecond=0)


def make_session(persona, *, label: str = "", open_: bool = True, expired: bool = False) -> UploadSession:
    now = timezone.now()
    return UploadSession.objects.create(
        project=persona.project,
        label=label,
        expires_at=now - timedelta(minutes=1) if expired else now + timedelta(hours=1),
        max_images=100,
        allowed_mime_types=["image/jpeg"],
        closed_at=None if open_ else now,
    )


def make_image(session: UploadSession, *, when=None, name: str = "photo.jpg") -> Image:
    index = Image.objects.filter(session=session).count()
    return Image.objects.create(
        session=session,
        index=index,
        filename=name,
        mime_type="image/jpeg",
        extension="jpg",
        size_bytes=10,
        width=1,
        height=1,
        sha256="0" * 64,
        staged_name=f"staged/{session.pk}/{index}",
        created_at=when or timezone.now(),
    )


def make_delivery(image: Image, destination: Destination, *, status: str, when=None, error: str = "") -> Delivery:
    delivery = Delivery.objects.create(image=image, destination=destination, status=status, last_error=error)
    if when is not None:
        Delivery.objects.filter(pk=delivery.pk).update(created_at=when, updated_at=when)
    return delivery


def seed(persona, destination, session, *, days_ago: int, delivered: int = 0, failed: int = 0, pending: int = 0):
    when = start_of_today() - timedelta(days=days_ago)
    for status, count in (("delivered", delivered), ("failed", failed), ("pending", pending)):
        for _ in range(count):
            make_delivery(make_image(session, when=when), destination, status=status, when=when)


def chart_days(page: str) -> dict[str, dict[str, int]]:
    """The SVG's bars: day → outcome → count."""
    found = {}
    for day, group in re.findall(r'<g class="day" data-day="([0-9-]+)">(.*?)</g>', page, re.S):
        found[day] = {
            outcome: int(count) for outcome, count in re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', group)
        }
    return found


# --- who -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("owner", 200), ("admin", 200), ("member", 200), ("outsider", 404)])
def test_every_member_reads_the_overview_and_an_outsider_gets_404(owner, roles, who, status):
    client = signed_in(roles[who])

    page = client.get(overview_url(owner))
    posted = client.post(overview_url(owner))

    assert page.status_code == status
    assert posted.status_code == 405  # nothing to change here
    if status == 200:
        assert owner.project.name.replace("'", "&#x27;") in page.content.decode()


def test_an_anonymous_visitor_is_sent_to_sign_in(owner):
    response = Client().get(overview_url(owner))

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "x" * 500])
def test_a_malformed_or_unknown_project_is_404(owner, bad):
    assert signed_in(owner.user).get(f"/projects/{bad}").status_code == 404


def test_the_home_page_and_the_project_nav_lead_to_the_overview_and_the_webhooks(owner):
    client = signed_in(owner.user)

    home = client.get("/").content.decode()
    page = client.get(overview_url(owner)).content.decode()

    assert f'href="/projects/{owner.project.pk}"' in home
    # The overview is the current tab on its own page only.
    assert f'href="/projects/{owner.project.pk}" aria-current="page">Overview</a>' in page
    assert f'href="/projects/{owner.project.pk}/webhooks">Event webhooks</a>' in page


# --- counters --------------------------------------------------------------------------------------


def test_the_counters_count_this_projects_rows_only(owner):
    destination = webhook_destination(owner)
    broken = webhook_destination(owner, name="broken")
    gone = webhook_destination(owner, name="gone")
    Destination.objects.filter(pk__in=[broken.pk, gone.pk]).update(needs_reconnect=True)
    Destination.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())
    session = make_session(owner)
    make_session(owner, open_=False)
    make_session(owner, expired=True)  # past its expiry, not yet closed by the sweeper: not open
    seed(owner, destination, session, days_ago=0, delivered=2, failed=1)
    seed(owner, destination, session, days_ago=3, pending=1)
    Delivery.objects.filter(status="pending").update(status="delivering")
    seed(owner, destination, session, days_ago=3, pending=1)
    seed(owner, destination, session, days_ago=8, delivered=4)
    other = make_persona("overview-other")
    seed(other, webhook_destination(other), make_session(other), days_ago=0, failed=5)

    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    counters = dict(re.findall(r"<dt>([^<]+)</dt><dd>(?:<a [^>]+>)?(\d+)", page))
    assert counters == {
        "Open sessions": "1",
        "Photos today": "3",
        "Photos, last 7 days": "5",
        "Deliveries delivered": "6",
        "Deliveries failed": "1",
        "Deliveries pending": "2",
        "Destinations to reconnect": "1",
    }


# --- the chart -------------------------------------------------------------------------------------


def test_the_chart_has_the_last_14_days_with_the_right_numbers_and_empty_days(owner):
    destination = webhook_destination(owner)
    session = make_session(owner)
    seed(owner, destination, session, days_ago=0, delivered=3, failed=1, pending=2)
    seed(owner, destination, session, days_ago=1, failed=2)
    seed(owner, destination, session, days_ago=13, delivered=1)
    seed(owner, destination, session, days_ago=14, delivered=9)  # one day too old

    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    today = timezone.localdate()
    days = [(today - timedelta(days=n)).isoformat() for n in range(13, -1, -1)]
    bars = chart_days(page)
    assert list(bars) == days
    assert bars[days[-1]] == {"delivered": 3, "failed": 1, "pending": 2}
    assert bars[days[-2]] == {"failed": 2}
    assert bars[days[0]] == {"delivered": 1}
    assert all(bars[day] == {} for day in days[1:-2])
    table = dict(re.findall(r'<th scope="row">([0-9-]+)</th>((?:<td>\d+</td>){4})', page))
    assert table[days[-1]] == "<td>3</td><td>1</td><td>2</td><td>6</td>"
    assert table[days[5]] == "<td>0</td><td>0</td><td>0</td><td>0</td>"
    assert len(table) == 14


def test_the_chart_is_labelled_for_screen_readers(owner):
    destination = webhook_destination(owner)
    seed(owner, destination, make_session(owner), days_ago=0, delivered=2, failed=1)

    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    svg = page.split('<svg id="delivery-chart"')[1].split("</svg>")[0]
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-description"' in svg
    assert '<title id="chart-title">Deliveries per day for the last 14 days, by outcome</title>' in svg
    assert "2 delivered, 1 failed, 0 pending in all." in svg
    # Drawn on the server: no script of the page's own (every page loads the shared static/dashboard/dashboard.js).
    assert "<script" not in svg and "<script>" not in page


def test_the_chart_of_a_project_without_deliveries_draws_an_empty_axis(owner):
    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    assert all(bars == {} for bars in chart_days(page).values()) and len(chart_days(page)) == 14
    assert "0 delivered, 0 failed, 0 pending in all." in page


@pytest.mark.parametrize(
    ("largest", "top", "step"),
    [(0, 1, 1), (1, 1, 1), (5, 5, 1), (7, 8, 2), (10, 10, 2), (60, 60, 20), (99, 100, 20), (1234, 1500, 500)],
)
def test_the_y_axis_ends_on_a_round_number_with_at_most_five_steps(largest, top, step):
    assert _scale_top(largest) == (top, step)


def test_bars_are_stacked_from_the_baseline_in_proportion():
    today = timezone.localdate()
    chart = delivery_chart([DayTally(today - timedelta(days=1)), DayTally(today, delivered=6, failed=2, pending=2)])

    empty, full = chart["columns"]
    plot_height = HEIGHT - TOP - BOTTOM
    delivered, failed, pending = full.bars
    assert empty.bars == []
    assert chart["ticks"][-1]["value"] == 10 and chart["ticks"][-1]["y"] == TOP
    assert delivered.y + delivered.height == pytest.approx(chart["baseline"])
    assert failed.y + failed.height == pytest.approx(delivered.y)
    assert pending.y + pending.height == pytest.approx(failed.y)
    assert (delivered.height, failed.height) == (pytest.approx(plot_height * 0.6), pytest.approx(plot_height * 0.2))


# --- failures --------------------------------------------------------------------------------------


def test_the_ten_latest_failures_link_to_their_sessions(owner):
    destination = webhook_destination(owner, name="Claims bucket")
    session = make_session(owner, label="claim 4711")
    start = timezone.now() - timedelta(hours=1)
    made = [
        make_delivery(
            make_image(session, name=f"photo-{n}.jpg"),
            destination,
            status="failed",
            when=start + timedelta(minutes=n),
            error=f"HTTP 500 number {n}",
        )
        for n in range(12)
    ]
    make_delivery(make_image(session, name="fine.jpg"), destination, status="delivered")

    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    failures = page.split('<table class="data" id="failures">')[1].split("</table>")[0]
    assert failures.count("<tr>") == 11  # the head and ten rows
    assert "photo-11.jpg" in failures and "photo-2.jpg" in failures and "photo-1.jpg" not in failures
    assert failures.index("photo-11.jpg") < failures.index("photo-10.jpg")  # newest first
    assert "HTTP 500 number 11" in failures and "Claims bucket" in failures and "fine.jpg" not in failures
    assert f'<a href="/projects/{owner.project.pk}/sessions/{session.pk}">claim 4711</a>' in failures
    assert len(made) == 12


def test_without_failures_the_page_says_so(owner):
    page = signed_in(owner.user).get(overview_url(owner)).content.decode()

    assert "No failed deliveries." in page


# --- queries ---------------------------------------------------------------------------------------


def test_the_overview_reads_a_fixed_number_of_queries_whatever_the_projects_size(owner, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in(owner.user)
    destination = webhook_destination(owner)
    session = make_session(owner)
    seed(owner, destination, session, days_ago=0, failed=1)
    client.get(overview_url(owner))
    with CaptureQueriesContext(connection) as few:
        client.get(overview_url(owner))
    for days_ago in range(14):
        seed(owner, destination, make_session(owner), days_ago=days_ago, delivered=2, failed=2, pending=1)

    with django_assert_max_num_queries(len(few)):
        client.get(overview_url(owner))
    assert len(few) <= 10  # the session, user, membership, four counters, the chart, the failures, the switcher
