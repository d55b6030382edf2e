"""An API key passed as `?token=` never reaches the access log (docs/api.md "Server-Sent Events")."""

import logging

import pytest

from apertur.request_logging import RedactTokens


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "GET /api/v1/sessions/s/events?token=aptr_live_x HTTP/1.1",
            "GET /api/v1/sessions/s/events?token=[redacted] HTTP/1.1",
        ),
        ("GET /e?a=1&token=aptr_live_x&b=2 HTTP/1.1", "GET /e?a=1&token=[redacted]&b=2 HTTP/1.1"),
        ("GET /e?%74oken=aptr_live_x HTTP/1.1", "GET /e?%74oken=[redacted] HTTP/1.1"),
        ("GET /e?TOKEN=aptr_live_x HTTP/1.1", "GET /e?TOKEN=[redacted] HTTP/1.1"),
        ("GET /e?tokens=kept HTTP/1.1", "GET /e?tokens=kept HTTP/1.1"),
    ],
)
def test_a_token_in_the_query_is_redacted_however_it_is_spelt(line, expected):
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s" %d', ("1.2.3.4", line, 200), None
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == f'1.2.3.4 - "{expected}" 200'


def test_the_console_redacts_a_server_errors_line_too():
    """Django logs a 5xx as 'Internal Server Error: <path>' from django.request; a mailed link's key in that path
    must not reach the console either (the access log's filter does not see it)."""
    import io

    console = next(
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(found, RedactTokens) for found in getattr(handler, "filters", []))
    )
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        logging.getLogger("django.request").error("Internal Server Error: %s", "/invitations/SeCrEtToKeN")
    finally:
        console.setStream(previous)

    assert "SeCrEtToKeN" not in stream.getvalue() and "/invitations/[redacted]" in stream.getvalue()
