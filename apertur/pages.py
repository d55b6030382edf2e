"""The site's front page (what this server is and where to go next; the API is described in docs/api.md), and
what the dashboard's pages share: the refusal page, and secrets shown once (docs/dashboard.md "Pages")."""

import json
import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_safe

from apertur.crypto import decrypt_text_if_fresh, encrypt_text
from apertur.errors import AppError
from projects.models import Membership

REFUSAL_HEADINGS = {403: "Not allowed", 404: "Not found"}


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    projects = []
    if request.user.is_authenticated:
        projects = list(
            Membership.objects.filter(user=request.user).select_related("project").order_by("project__name")
        )
    return render(request, "home.html", {"api_base": "/api/v1/", "memberships": projects})


def refusal_page(request: HttpRequest, error: AppError, *, heading: str = "Not possible") -> HttpResponse:
    """An AppError of a page for signed-in users as a plain page with its status and message: never a 500 or the
    API's JSON body."""
    return render(
        request,
        "destinations/refused.html",
        {"heading": REFUSAL_HEADINGS.get(error.status, heading), "message": error.message},
        status=error.status,
    )


# Post/redirect/get for a page that shows a new secret once (a key, a signing secret, an event webhook's secret): a
# reload must not make another one. The secret waits in the user's session for the GET the redirect names
# (`?shown=<nonce>`), which takes it out: encrypted with the server's keys (APERTUR_SECRET_KEYS) and good for
# SHOW_ONCE_SECONDS, so one that was never picked up is useless; several can wait at once (two tabs), each bound to
# its project and its kind.
SHOW_ONCE_KEY = "apertur_show_once"
SHOW_ONCE_SECONDS = 300


def _opened(token: str) -> dict[str, Any] | None:
    text = decrypt_text_if_fresh(token, max_age_seconds=SHOW_ONCE_SECONDS)
    return None if text is None else json.loads(text)


def show_once(request: HttpRequest, url: str, *, kind: str, project_id: str, **entry: str) -> HttpResponse:
    """Keep `entry` (the secret and what it belongs to) for the one GET of `url` this redirect leads to."""
    waiting = {
        nonce: token
        for nonce, token in request.session.get(SHOW_ONCE_KEY, {}).items()
        if _opened(token) is not None  # the stale ones go
    }
    nonce = secrets.token_urlsafe(12)
    waiting[nonce] = encrypt_text(json.dumps({**entry, "kind": kind, "project_id": project_id}))
    request.session[SHOW_ONCE_KEY] = waiting
    return redirect(f"{url}?shown={nonce}")


def take_shown_once(request: HttpRequest, *, kinds: tuple[str, ...], project_id: str) -> dict[str, Any] | None:
    """The entry the request's `?shown=` names, once, if it is of one of `kinds` and of this project."""
    nonce = request.GET.get("shown", "")
    waiting = request.session.get(SHOW_ONCE_KEY, {})
    entry = _opened(waiting[nonce]) if nonce in waiting else None
    if entry is None or entry.get("kind") not in kinds or entry.get("project_id") != project_id:
        return None
    del waiting[nonce]
    request.session[SHOW_ONCE_KEY] = waiting
    return entry
