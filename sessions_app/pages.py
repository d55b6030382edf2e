"""The page a phone opens at a session's upload_url (/u/<session_id>): for now a placeholder that says what the
session's state is in plain words. The upload page itself is still to come (README.md, "What is here").

A GET only reads: an open session past its expiry is shown as expired without being closed (the sweeper closes
it within seconds).
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from sessions_app.models import UploadSession
from sessions_app.status import Status, displayed_status


@require_safe
@never_cache  # the state changes with every upload
def upload_page(request: HttpRequest, session_id: str) -> HttpResponse:
    # The id comes from the URL: PostgreSQL refuses a NUL character in a text query, and no id has one.
    session = None if "\x00" in session_id else UploadSession.objects.filter(pk=session_id).first()
    if session is None:
        return render(request, "sessions_app/upload_not_found.html", status=404)
    status = displayed_status(session)
    context = {"session": session, "state": state_in_words(session, status), "open": _is_open(session, status)}
    return render(request, "sessions_app/upload_placeholder.html", context)


def state_in_words(session: UploadSession, status: str) -> str:
    """What a phone user needs to know about the session, without API vocabulary."""
    if status == Status.PENDING:
        return "Waiting for photos: none has been uploaded yet."
    if status == Status.UPLOADING and session.closed_at is None:
        return f"Receiving photos: {session.images_count} of {session.max_images} uploaded so far."
    if status == Status.UPLOADING:
        return "All photos are in; they are still being delivered."
    if status == Status.COMPLETED:
        return "Done: every photo was received and delivered."
    if status == Status.FAILED:
        return "Finished, but some photos could not be delivered."
    return "This link has expired and no longer accepts photos."


def _is_open(session: UploadSession, status: str) -> bool:
    return session.closed_at is None and status != Status.EXPIRED
