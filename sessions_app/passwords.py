"""Session passwords (docs/api.md "Password"): checking one with a lockout per session and client IP, and the
signed cookie the upload page gets after a valid verify. The API views, the upload service and the phone page
all use these, so a password is checked one way everywhere.
"""

import contextlib
import hashlib
import hmac
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.cache import cache
from django.core.signing import BadSignature
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from apertur.errors import AppError
from sessions_app.models import UploadSession

PASSWORD_COOKIE_SALT = "apertur.session-password"  # noqa: S105 (a signing salt, not a password)


# --- the upload page's cookie ---------------------------------------------------------------------


def password_cookie_name(session_id: str) -> str:
    return f"aptr_pw_{session_id}"


def password_cookie_value(session: UploadSession) -> str:
    """What the page's signed cookie carries: it changes whenever the password does."""
    return hashlib.sha256(session.password_hash.encode()).hexdigest()[:32]


def _cookie_max_age_seconds() -> int:
    # No session outlives the longest expiry, so neither need its cookie.
    return int(settings.APERTUR_MAX_EXPIRY_HOURS * 3600)


def password_cookie_read(request: HttpRequest, session_id: str) -> str | None:
    """The session's password cookie as signed by this server, or None when it is missing, forged or too old."""
    try:
        return request.get_signed_cookie(
            password_cookie_name(session_id), salt=PASSWORD_COOKIE_SALT, max_age=_cookie_max_age_seconds()
        )
    except (KeyError, BadSignature):
        return None


def api_password_cookie_read(request: HttpRequest, session_id: str) -> str | None:
    """The password cookie, for the upload API's writes (upload, complete): only when the request comes from the
    page itself. The cookie may be SameSite=None (embedding), so another site could make a browser that passed the
    gate send it; a browser says where a request comes from (`Sec-Fetch-Site`, else `Origin`). A client that sends
    neither is not a browser acting for another site."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if fetch_site is not None:
        same_origin = fetch_site in ("same-origin", "none")
    elif origin is not None:
        same_origin = origin in (f"{request.scheme}://{request.get_host()}", _origin_of(settings.APERTUR_PUBLIC_URL))
    else:
        same_origin = True
    return password_cookie_read(request, session_id) if same_origin else None


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def password_cookie_set(response: HttpResponse, session: UploadSession) -> None:
    """Give the browser the cookie that stands for the password on this session's later requests."""
    secure = settings.APERTUR_PUBLIC_URL.startswith("https://")
    # It lives as long as the session may take photos: a phone that opens many protected links does not collect
    # cookies that outlive them.
    remaining = int((session.expires_at - timezone.now()).total_seconds())
    response.set_signed_cookie(
        password_cookie_name(session.pk),
        password_cookie_value(session),
        salt=PASSWORD_COOKIE_SALT,
        max_age=min(max(remaining, 60), _cookie_max_age_seconds()),
        httponly=True,
        # The page may be embedded in another site's iframe (docs/upload-page.md "Embedding"), where a Lax cookie
        # is never sent; browsers take SameSite=None only with Secure, so over plain HTTP it stays Lax. The upload
        # API takes it only from the page itself (`api_password_cookie_read`), the page's forms carry CSRF tokens.
        samesite="None" if secure else "Lax",
        secure=secure,
    )


# --- attempts and the lockout ---------------------------------------------------------------------


def _attempt_keys(session_id: str, ip: str) -> tuple[str, str]:
    return f"password-failures:{session_id}:{ip}", f"password-failures-since:{session_id}:{ip}"


def _locked_out(since_key: str) -> AppError:
    since = cache.get(since_key) or time.time()
    retry_after = max(int(since + settings.APERTUR_PASSWORD_LOCKOUT_SECONDS - time.time()), 1)
    return AppError(
        429,
        "TOO_MANY_PASSWORD_ATTEMPTS",
        "Too many wrong passwords; try again later.",
        headers={"Retry-After": str(retry_after)},
    )


def _ensure_not_locked(session_id: str, ip: str) -> None:
    count_key, since_key = _attempt_keys(session_id, ip)
    if (cache.get(count_key) or 0) >= settings.APERTUR_PASSWORD_MAX_ATTEMPTS:
        raise _locked_out(since_key)


def _reserve_attempt(session_id: str, ip: str) -> None:
    """Count an attempt before checking it (atomically), so parallel guesses cannot all slip in under the
    limit while the slow hasher runs; a right password gives its attempt back."""
    count_key, since_key = _attempt_keys(session_id, ip)
    window = settings.APERTUR_PASSWORD_LOCKOUT_SECONDS
    cache.add(since_key, time.time(), timeout=window)
    cache.add(count_key, 0, timeout=window)
    try:
        count = cache.incr(count_key)
    except ValueError:  # evicted between add and incr
        cache.set(count_key, 1, timeout=window)
        count = 1
    if count > settings.APERTUR_PASSWORD_MAX_ATTEMPTS:
        raise _locked_out(since_key)


def _refund_attempt(session_id: str, ip: str) -> None:
    count_key, _ = _attempt_keys(session_id, ip)
    with contextlib.suppress(ValueError):  # the window ended meanwhile
        cache.decr(count_key)


def _verified_cache_key(session: UploadSession, password: str) -> str:
    # Django's hasher is deliberately slow; an upload burst with the same header checks it once.
    material = f"{session.pk}\0{session.password_hash}\0{password}".encode()
    return "password-ok:" + hmac.new(settings.SECRET_KEY.encode(), material, hashlib.sha256).hexdigest()


# --- checks ---------------------------------------------------------------------------------------


def session_password_verify(*, session: UploadSession, password: str, ip: str) -> bool:
    """Check a password, counting wrong ones per session and client IP; 429 once the lockout is reached."""
    _ensure_not_locked(session.pk, ip)
    if not session.password_protected:
        return True
    key = _verified_cache_key(session, password)
    if cache.get(key):
        return True
    _reserve_attempt(session.pk, ip)
    if check_password(password, session.password_hash):
        _refund_attempt(session.pk, ip)
        cache.set(key, True, timeout=settings.APERTUR_PASSWORD_LOCKOUT_SECONDS)
        return True
    return False


def ensure_password(*, session: UploadSession, password: str | None, cookie: str | None, ip: str) -> None:
    """Authorise an upload or completion: the `x-session-password` header (API clients) or the value of the
    page's signed cookie (browsers, from `password_cookie_read`). 401 PASSWORD_REQUIRED / INVALID_PASSWORD, 429."""
    if not session.password_protected:
        _ensure_not_locked(session.pk, ip)
        return
    # A valid signed cookie proves the password was given before: a guesser sharing the phone's address (a venue's
    # Wi-Fi) must not lock it out. Bytes: compare_digest refuses str with non-ASCII characters.
    if cookie is not None and hmac.compare_digest(cookie.encode(), password_cookie_value(session).encode()):
        return
    # A password in the header is a guess like any other: behind the lockout.
    _ensure_not_locked(session.pk, ip)
    if not password:
        raise AppError(401, "PASSWORD_REQUIRED", "This session is password protected.")
    if not session_password_verify(session=session, password=password, ip=ip):
        raise AppError(401, "INVALID_PASSWORD", "The session password is wrong.")
