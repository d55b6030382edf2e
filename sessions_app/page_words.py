"""The upload page's words (docs/upload-page.md "Languages"): the language it speaks, and what it says about
refusals, in the phone user's words rather than the API's codes. The server-rendered page and its script use the
same sentences: the script gets them translated in the page's configuration.
"""

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apertur.errors import AppError
from sessions_app.models import UploadSession

MIME_TYPE_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP", "image/heic": "HEIC"}
COLOR_SCHEMES = ("dark", "light")
# The same sentence as the thank-you page's (templates/sessions_app/upload_state.html), for the script.
THANKS_ONE = "Your photo was received. You can close this page."
THANKS_MANY = "Your %(count)s photos were received. You can close this page."


def language_of(request: HttpRequest) -> str:
    """`?lang=` when it names a language the page speaks, else the browser's `Accept-Language`, else English."""
    supported = {code for code, _name in settings.LANGUAGES}
    asked = request.GET.get("lang", "").lower()
    if asked in supported:
        return asked
    return translation.get_language_from_request(request)


def color_scheme_of(request: HttpRequest) -> str | None:
    """`?colorScheme=dark|light`; None follows the phone's own setting."""
    scheme = request.GET.get("colorScheme", "").lower()
    return scheme if scheme in COLOR_SCHEMES else None


def types_in_words(mime_types: list[str]) -> str:
    return ", ".join(MIME_TYPE_NAMES.get(mime_type, mime_type) for mime_type in mime_types)


def counter(images_count: int, max_images: int) -> str:
    """ "3 of 10 photos sent": the plural form follows the count (French: "1 photo envoyée sur 4")."""
    return _counter_form(images_count) % {"count": images_count, "max": max_images}


def _counter_form(count: int) -> str:
    return ngettext("%(count)s of %(max)s photos received", "%(count)s of %(max)s photos received", count)


def _wait_in_words(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    if seconds < 60:
        return ngettext("%(n)s second", "%(n)s seconds", seconds) % {"n": seconds}
    return ngettext("%(n)s minute", "%(n)s minutes", minutes) % {"n": minutes}


def error_in_words(error: AppError, session: UploadSession) -> str:
    """A refusal as the phone user should read it: what happened and what to do."""
    words = refusal_words(session)
    if error.code in ("TOO_MANY_PASSWORD_ATTEMPTS", "RATE_LIMITED"):
        retry_after = int((error.headers or {}).get("Retry-After", "60"))
        template = words[error.code]
        return template.replace("{wait}", _wait_in_words(retry_after))
    return words.get(error.code) or words["UNKNOWN"]


def refusal_words(session: UploadSession) -> dict[str, str]:
    """Every refusal the page can meet, by the API's error code. `{wait}` is filled in where it is known."""
    return {
        "FILE_TOO_LARGE": _("This photo is too big: the limit is %(limit)s MB.")
        % {"limit": session.effective_max_image_size_mb},
        "UNSUPPORTED_MEDIA_TYPE": _("This type of file is not accepted here. Accepted: %(types)s.")
        % {"types": types_in_words(session.allowed_mime_types)},
        "INVALID_IMAGE": _("This file is not a photo that can be read. Choose another one."),
        "DIMENSION_EXCEEDED": _("This photo is too large: at most %(pixels)s pixels wide and high.")
        % {"pixels": session.max_image_dimension or 0},
        "SESSION_FULL": ngettext(
            "No more photos can be added: the limit of %(max)s photo is reached.",
            "No more photos can be added: the limit of %(max)s photos is reached.",
            session.max_images,
        )
        % {"max": session.max_images},
        "SESSION_EXPIRED": _("This link has expired. Ask whoever sent it to you for a new one."),
        "SESSION_CLOSED": _("This upload is finished and takes no more photos. Ask for a new link to send more."),
        "NOT_FOUND": _("This upload link does not exist. Ask whoever sent it to you for a new one."),
        "PASSWORD_REQUIRED": _("Enter the password you were given to send photos."),
        "INVALID_PASSWORD": _("That password is not right. Check it and try again."),
        "TOO_MANY_PASSWORD_ATTEMPTS": _("Too many wrong passwords. Try again in {wait}."),
        "RATE_LIMITED": _("Too many photos at once. Try again in {wait}."),
        "SERVER_BUSY": _("The server is busy. Try again in a moment."),
        "CSRF_FAILED": _("This page has expired. Reload it and try again."),
        "VALIDATION_ERROR": _("Choose a photo to send."),
        "NETWORK": _("The connection was lost. Check your signal; the photo will be sent again."),
        "UNKNOWN": _("Something went wrong. Try again."),
    }


def script_words(session: UploadSession) -> dict[str, str]:
    """The sentences the page's script shows, translated: refusals by code, and the states of a photo."""
    return {
        **refusal_words(session),
        # The script picks by count: 0, 1, or more (the forms differ by language).
        **{
            f"counter{form}": _counter_form(count) % {"count": "{count}", "max": "{max}"}
            for form, count in (("0", 0), ("1", 1), ("N", 2))
        },
        "waitSecond": ngettext("%(n)s second", "%(n)s seconds", 1) % {"n": "{n}"},
        "waitSeconds": ngettext("%(n)s second", "%(n)s seconds", 2) % {"n": "{n}"},
        "waitMinute": ngettext("%(n)s minute", "%(n)s minutes", 1) % {"n": "{n}"},
        "waitMinutes": ngettext("%(n)s minute", "%(n)s minutes", 2) % {"n": "{n}"},
        "gateNetwork": _("The connection was lost. Check your signal and try again."),
        "cookieBlocked": _(
            "This browser does not let the embedded page remember the password. Open the page on its own to send "
            "photos."
        ),
        "openAlone": _("Open the page on its own"),
        "retryPhoto": _("Retry %(name)s") % {"name": "{name}"},
        "removePhoto": _("Remove %(name)s") % {"name": "{name}"},
        "queued": _("Waiting to send…"),
        "preparing": _("Preparing…"),
        "uploading": _("Sending… %(percent)s%%") % {"percent": "{percent}"},
        "processing": _("Checking the photo…"),
        "received": _("Received"),
        "delivering": _("Received, passing it on…"),
        "sent": _("Sent"),
        "deliveryRetrying": _("Received; passing it on is taking longer than usual."),
        "deliveryFailed": _("Received, but it could not be passed on. The sender will see this."),
        "offline": _("No connection. The photo will be sent when you are back online."),
        "retry": _("Retry"),
        "remove": _("Remove"),
        "finishing": _("Finishing…"),
        "doneFailed": _("Could not finish. Check your connection and try again."),
        "waitForUploads": _("Wait until every photo is sent, or remove the ones that failed."),
        "done": _("Done"),
        "thanksHeading": _("Thank you!"),
        "thanksOne": ngettext(THANKS_ONE, THANKS_MANY, 1),
        "thanksMany": ngettext(THANKS_ONE, THANKS_MANY, 2) % {"count": "{count}"},
        "heicNotAccepted": _("iPhone HEIC photos are not accepted here and this browser cannot convert them."),
    }
