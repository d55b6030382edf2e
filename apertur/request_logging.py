"""Requests the client got wrong are logged as one WARNING line.

Django logs a refused request as an ERROR with a traceback when the refusal is a SuspiciousOperation (a Host
header not in ALLOWED_HOSTS, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields or files), and with the
exception's traceback when a body cannot be parsed, though nothing on the server failed: monitoring that pages
on ERROR would page on every scanner. Server errors (5xx) keep their level and traceback.
"""

import logging
import re
from urllib.parse import unquote_plus


class ClientErrorsOnOneLine(logging.Handler):
    """Rewrites, in place, the record of a request answered below 500 as one WARNING line without traceback that
    names the exception, the method and the path. It writes nothing itself.

    It is the only handler of django.request and django.security, which keep propagating: a record meets it
    before it moves up to the `django` and root loggers, so every handler there (the console, mail_admins,
    pytest's caplog) sees the rewritten record.
    """

    def emit(self, record: logging.LogRecord) -> None:
        status = getattr(record, "status_code", None)
        if status is None or status >= 500:
            return
        message = record.getMessage()
        exception = record.exc_info[1] if record.exc_info else None
        if exception is not None:
            name = type(exception).__name__
            message = f"{name}: {message}" if message == str(exception) else f"{message} ({name}: {exception})"
        request = getattr(record, "request", None)
        path = getattr(request, "path", "")
        if path and path not in message:
            message = f"{message} [{getattr(request, 'method', '')} {path}]"
        # A client controls parts of the message (the Host header, the path): no line breaks of its own.
        record.msg, record.args = RedactTokens()._redacted(" ".join(message.splitlines())), None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = record.stack_info = None


class RedactTokens(logging.Filter):
    """Access-log lines name the request's path with its query; an API key passed as `?token=` (event streams) must
    not land in logs, however its name is spelt (`%74oken` is `token` to Django), nor the key of a mailed account
    link (password reset, address confirmation), which is part of the path."""

    QUERY = re.compile(r"\?([^\s\"]*)")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(self._redacted(arg) for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = self._redacted(record.msg)
        return True

    # The keys of the mailed links (a password reset, an address confirmation, a project's invitation) are in the
    # path, and in a `next=` query, encoded or not, on the way through signing in.
    ACCOUNT_KEY = re.compile(
        r"(/accounts/(?:password/reset/key|confirm-email)/|/invitations/|%2Finvitations%2F)[^/\s\"?&]+", re.IGNORECASE
    )

    def _redacted(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = self.ACCOUNT_KEY.sub(r"\1[redacted]", value)
        if "?" not in value:
            return value
        return self.QUERY.sub(lambda match: "?" + self._redacted_query(match.group(1)), value)

    @staticmethod
    def _redacted_query(query: str) -> str:
        parts = []
        for part in query.split("&"):
            name, equals, _ = part.partition("=")
            if equals and unquote_plus(name).strip().lower() == "token":
                part = f"{name}=[redacted]"
            parts.append(part)
        return "&".join(parts)
