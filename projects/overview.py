"""A project's overview, its landing page in the dashboard (`/projects/<id>`): the counters, a chart of the
deliveries of the last 14 days by outcome drawn as SVG on the server (no script), and the latest failures. Every
member reads it. The numbers come from delivery/overview_selectors.py; this module only lays the chart out."""

from dataclasses import dataclass
from math import ceil, log10

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from apertur.errors import AppError
from apertur.pages import refusal_page
from delivery import overview_selectors
from delivery.overview_selectors import DayTally
from projects import selectors

# The chart's drawing box (SVG user units; the SVG scales to its container's width).
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 44
OUTCOMES = (("delivered", "Delivered"), ("failed", "Failed"), ("pending", "Pending"))


@dataclass(frozen=True)
class Bar:
    outcome: str
    label: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    tally: DayTally
    x: float
    width: float
    label_x: float
    bars: list[Bar]

    @property
    def description(self) -> str:
        return (
            f"{self.tally.day:%b} {self.tally.day.day}: {self.tally.delivered} delivered, "
            f"{self.tally.failed} failed, {self.tally.pending} pending"
        )


def _scale_top(largest: int) -> tuple[int, int]:
    """The top of the y axis and its step: 1, 2 or 5 times a power of ten, at most 5 steps, at least 1."""
    if largest <= 0:
        return 1, 1
    for step in sorted(base * 10**power for power in range(int(log10(largest)) + 1) for base in (1, 2, 5)):
        if largest / step <= 5:
            return step * ceil(largest / step), step
    raise AssertionError("unreachable: the largest step is at least the largest count")


def delivery_chart(days: list[DayTally]) -> dict:
    """Stacked bars (delivered at the bottom, then failed, then pending), the y axis's ticks, and the totals the
    chart's title and table say."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, step = _scale_top(max((day.total for day in days), default=0))
    slot = plot_width / max(len(days), 1)
    columns = []
    for index, tally in enumerate(days):
        x = LEFT + index * slot + slot * 0.15
        base = TOP + plot_height
        bars = []
        for outcome, label in OUTCOMES:
            count = getattr(tally, outcome)
            height = plot_height * count / top
            base -= height
            if count:
                bars.append(Bar(outcome, label, count, round(base, 2), round(height, 2)))
        columns.append(Column(tally, round(x, 2), round(slot * 0.7, 2), round(x + slot * 0.35, 2), bars))
    ticks = [
        {"value": value, "y": round(TOP + plot_height - plot_height * value / top, 2)}
        for value in range(0, top + 1, step)
    ]
    totals = {outcome: sum(getattr(day, outcome) for day in days) for outcome, _ in OUTCOMES}
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": TOP + plot_height,
        "label_y": TOP + plot_height + 18,
        "legend_y": HEIGHT - 6,
        "columns": columns,
        "ticks": ticks,
        "totals": totals,
    }


@require_safe
@login_required
def overview(request: HttpRequest, project_id: str) -> HttpResponse:
    try:
        membership = selectors.membership_for(user=request.user, project_id=project_id)
    except AppError as error:
        return refusal_page(request, error)
    project, now = membership.project, timezone.now()
    days = overview_selectors.deliveries_per_day(project=project, now=now)
    return render(
        request,
        "projects/overview.html",
        {
            "project": project,
            "counters": overview_selectors.overview_counters(project=project, now=now),
            "chart": delivery_chart(days),
            "days": days,
            "failures": overview_selectors.latest_failures(project=project),
        },
    )
