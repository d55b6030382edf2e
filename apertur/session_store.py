"""Django's database sessions, refusing a session cookie that could not be a key Django made.

Django makes keys of lower-case letters and digits, but it looks up whatever the cookie says; a quoted cookie may
unquote to a NUL character (`"\\000…"`), which PostgreSQL refuses with an error, so every page and every API request
carrying it answered 500. Such a cookie now counts as no session.
"""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(super()._validate_session_key(key)) and key.isascii() and key.isalnum()
