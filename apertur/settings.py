"""Apertur settings: one module, driven by environment variables (docs/configuration.md lists them all)."""

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
logger = logging.getLogger("apertur.settings")

# var/ holds the database, generated secrets, the demo credentials and staged photos: only the user running
# Apertur may read it (directories 0700, files 0600; docs/configuration.md, APERTUR_VAR_DIR).
PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def _private_directory(path: Path) -> Path:
    # mkdir's mode is masked by the umask and never applied to a directory that already exists (an older
    # install made var/ 0755), hence the chmod.
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        path.chmod(PRIVATE_DIRECTORY_MODE)
    except PermissionError:
        logger.warning("Cannot make %s private (0700): it belongs to another user.", path)
    return path


VAR_DIR = _private_directory(Path(os.environ.get("APERTUR_VAR_DIR", BASE_DIR / "var")))


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _development_secret(filename: str, generate: Callable[[], str]) -> str:
    """A value kept under var/ so development restarts keep sessions and decryptable secrets."""
    path = VAR_DIR / filename
    if not path.exists():
        # Written in full under a temporary name with its final mode, then linked into place: the value is never
        # readable by others, not even for a moment, and two processes starting at once agree on one value (the
        # second link fails and that process reads the first one's).
        temporary = path.with_name(f".{filename}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate())
        try:
            os.link(temporary, path)
            logger.warning("Generated %s for development; set it from the environment in production.", path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _development_secret(
    "django_secret_key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_dramatiq",
    "projects",
    "sessions_app",
    "destinations",
    "delivery",
    "apertur",
]

# Database sessions that refuse a cookie no key could be (apertur/session_store.py).
SESSION_ENGINE = "apertur.session_store"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apertur.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "apertur.urls"
# Pages for signed-in users (the OAuth connect flow, the account pages) send anonymous visitors to the accounts'
# sign-in (django-allauth; docs/configuration.md "Accounts").
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
WSGI_APPLICATION = "apertur.wsgi.application"
ASGI_APPLICATION = "apertur.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apertur.accounts.site",
            ],
        },
    },
]

# --- database: SQLite (WAL) under var/ by default, PostgreSQL via DATABASE_URL -------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'apertur.sqlite3'}"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE: a write transaction takes the write lock when it begins, so the
        # read-check-write of an upload (max_images) is serialised, as row locks do on PostgreSQL.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        # synchronous=FULL: an upload's 201 promises its rows survive a power cut, not only a crash.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
    }
    # Tests that start a web server or worker in another process need a file they can share.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    _sqlite_file = Path(DATABASES["default"]["NAME"] or ":memory:")
    if _sqlite_file.name != ":memory:" and _sqlite_file.parent.is_dir():
        # SQLite creates its file with the umask's mode (0644) and gives the -wal and -shm files the database
        # file's mode, so the file is made private before SQLite first opens it (an empty file is an empty
        # database); chmod covers a database an older install created.
        try:
            os.close(os.open(_sqlite_file, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
            _sqlite_file.chmod(PRIVATE_FILE_MODE)
        except PermissionError:
            logger.warning("Cannot make %s private (0600): it belongs to another user.", _sqlite_file)
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (rate limits, password lockouts): Redis when REDIS_URL is set ----------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- broker: Redis or RabbitMQ when DRAMATIQ_BROKER_URL is set, in-process otherwise -----------------
DRAMATIQ_BROKER_URL = os.environ.get("DRAMATIQ_BROKER_URL", "")
if DRAMATIQ_BROKER_URL.startswith(("amqp://", "amqps://")):
    _broker = {"BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker", "OPTIONS": {"url": DRAMATIQ_BROKER_URL}}
elif DRAMATIQ_BROKER_URL:
    _broker = {"BROKER": "dramatiq.brokers.redis.RedisBroker", "OPTIONS": {"url": DRAMATIQ_BROKER_URL}}
else:
    _broker = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}
DRAMATIQ_BROKER = {
    **_broker,
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Pipelines",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "apertur.broker.SweeperMiddleware",
        "apertur.broker.WorkerStartMiddleware",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]
EMBEDDED_BROKER = not DRAMATIQ_BROKER_URL

# --- staging storage: local files under var/media, or an S3 bucket --------------------------------
MEDIA_ROOT = Path(os.environ.get("APERTUR_MEDIA_ROOT", VAR_DIR / "media"))
STAGING_S3_BUCKET = os.environ.get("STAGING_S3_BUCKET", "")
if STAGING_S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": STAGING_S3_BUCKET,
            "endpoint_url": os.environ.get("STAGING_S3_ENDPOINT") or None,
            "region_name": os.environ.get("STAGING_S3_REGION") or None,
            "access_key": os.environ.get("STAGING_S3_ACCESS_KEY") or None,
            "secret_key": os.environ.get("STAGING_S3_SECRET_KEY") or None,
            "file_overwrite": True,
            "default_acl": None,
        },
    }
else:
    _default_storage = {"BACKEND": "apertur.storage.DurableFileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None
# Every FileSystemStorage (staged photos under var/media, collected static files under var/static) writes
# private files and directories, like everything else under var/.
FILE_UPLOAD_PERMISSIONS = PRIVATE_FILE_MODE
FILE_UPLOAD_DIRECTORY_PERMISSIONS = PRIVATE_DIRECTORY_MODE

STATIC_URL = "static/"
# Made at start (empty until `collectstatic`): WhiteNoise warns about a missing STATIC_ROOT on every start.
STATIC_ROOT = _private_directory(VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise (apertur/static.py) serves static files from the ASGI process; no proxy is needed for them.
# It also finds them in the apps, not only in STATIC_ROOT: a fresh clone's `manage.py apertur_run`, the
# tests' server processes and a var/ collected before an upgrade all serve the current files, at the cost
# of one walk of the apps' static folders when the process starts (docs/deployment.md, "Static files").
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en"
# The languages the phone upload page speaks (docs/upload-page.md "Languages"); catalogues under locale/.
LANGUAGES = [("en", "English"), ("fr", "Français"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- accounts (django-allauth): sign-up, sign-in by email, verification, password reset, TOTP ----------------
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# mandatory (the default): a new account signs in once its address is confirmed; optional; none.
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("APERTUR_ACCOUNT_EMAIL_VERIFICATION", "mandatory").strip().lower()
if ACCOUNT_EMAIL_VERIFICATION not in {"mandatory", "optional", "none"}:
    raise ImproperlyConfigured("APERTUR_ACCOUNT_EMAIL_VERIFICATION must be mandatory, optional or none")
# Reset and confirmation mails go to accounts that exist only: a stranger cannot make the server mail anyone.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Apertur] "
ACCOUNT_ALLOW_SIGNUPS = env_bool("APERTUR_ACCOUNT_ALLOW_SIGNUPS", True)
ACCOUNT_ADAPTER = "apertur.accounts.AccountAdapter"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# allauth's rate limits count in the cache (Redis when REDIS_URL is set, shared by every web process).
# Wrong passwords allowed for one account (its email) within the lockout window, the admin's sign-in included; the
# older APERTUR_ADMIN_LOGIN_* names are still read.
APERTUR_LOGIN_MAX_FAILURES = env_int("APERTUR_LOGIN_MAX_FAILURES", env_int("APERTUR_ADMIN_LOGIN_MAX_FAILURES", 5))
APERTUR_LOGIN_LOCKOUT_SECONDS = env_int(
    "APERTUR_LOGIN_LOCKOUT_SECONDS", env_int("APERTUR_ADMIN_LOGIN_LOCKOUT_SECONDS", 15 * 60)
)
if APERTUR_LOGIN_MAX_FAILURES < 1 or APERTUR_LOGIN_LOCKOUT_SECONDS < 1:
    raise ImproperlyConfigured("APERTUR_LOGIN_MAX_FAILURES and APERTUR_LOGIN_LOCKOUT_SECONDS must be at least 1")
ACCOUNT_RATE_LIMITS = {
    "login_failed": f"20/m/ip,{APERTUR_LOGIN_MAX_FAILURES}/{APERTUR_LOGIN_LOCKOUT_SECONDS}s/key",
    "signup": os.environ.get("APERTUR_ACCOUNT_SIGNUP_LIMIT", "20/m/ip"),
    "reset_password": "20/m/ip,5/m/key",
    "confirm_email": "1/3m/key",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_ADAPTER = "apertur.accounts.MFAAdapter"
MFA_TOTP_ISSUER = os.environ.get("APERTUR_MFA_TOTP_ISSUER", "Apertur")
# A code typed as the 30-second step turns over is still taken (one step either side), as most services do.
MFA_TOTP_TOLERANCE = 1
# Mail: SMTP when EMAIL_HOST is set; otherwise each message is written to a file under var/mail (read it to
# confirm an address on a machine without a mail server).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # SMTPS (port 465)
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)  # STARTTLS; Django refuses both at once
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = _private_directory(Path(os.environ.get("APERTUR_EMAIL_FILE_PATH", VAR_DIR / "mail")))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Apertur <noreply@apertur.local>")

# --- REST framework -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apertur.api.authentication.ApiKeyAuthentication",
        "apertur.api.authentication.DashboardSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apertur.api.permissions.HasApiKey"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "apertur.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "apertur.api.schema.AutoSchema",
}

# --- the OpenAPI schema at /api/schema/ and Swagger UI at /api/docs/ (apertur/openapi.py) --------------
SPECTACULAR_SETTINGS = {
    "TITLE": "Apertur API",
    "DESCRIPTION": (
        "Self-hosted Apertur: upload sessions, the phone's upload endpoints, delivery, pull delivery, live events, "
        "destinations and API keys. The reference, with every rule, is docs/api.md."
    ),
    "VERSION": "1",
    "OAS_VERSION": "3.0.3",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SCHEMA_PATH_PREFIX_TRIM": False,
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs are public, whatever key a request carries (an unknown one is not an error here).
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "ENUM_NAME_OVERRIDES": {
        "MimeTypeEnum": ["image/jpeg", "image/png", "image/webp", "image/heic"],
        "SessionStatusEnum": ["pending", "uploading", "completed", "failed", "expired"],
        "DeliveryStatusEnum": ["pending", "delivering", "delivered", "failed"],
        "EnvEnum": ["live", "test"],
        "UploadStatusEnum": ["pending", "delivered", "failed", "partial", "stored_only"],
        "PullStatusEnum": ["waiting", "leased", "acknowledged", "purged"],
        "AcknowledgedEnum": ["acknowledged"],
    },
    "PREPROCESSING_HOOKS": ["apertur.api.schema.api_v1_only"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apertur.api.schema.describe_parameters",
    ],
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "sessionPassword": {
                "type": "apiKey",
                "in": "header",
                "name": "x-session-password",
                "description": 'A password-protected session\'s password (docs/api.md "Session password").',
            }
        }
    },
    # Swagger UI's files from drf-spectacular-sidecar, served by this server (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": False, "displayOperationId": True},
}

# --- Apertur ------------------------------------------------------------------------------------
APERTUR_HOST = os.environ.get("HOST", "127.0.0.1")
APERTUR_PORT = env_int("PORT", 8000)
APERTUR_PUBLIC_URL = os.environ.get("APERTUR_PUBLIC_URL", f"http://{APERTUR_HOST}:{APERTUR_PORT}").rstrip("/")
APERTUR_SECRET_KEYS = env_list("APERTUR_SECRET_KEYS") or [
    _development_secret("secret_keys", lambda: Fernet.generate_key().decode())
]
APERTUR_ALLOWED_PRIVATE_NETWORKS = env_list("APERTUR_ALLOWED_PRIVATE_NETWORKS")
APERTUR_RETRY_DELAYS = [float(delay) for delay in env_list("APERTUR_RETRY_DELAYS", "5,30,120,600,3600")]
# A lease is a heartbeat (renewed a few times per lease while the attempt runs): short, so a killed worker's
# attempt is taken over within about a lease.
APERTUR_DELIVERY_LEASE_SECONDS = float(os.environ.get("APERTUR_DELIVERY_LEASE_SECONDS", 30))
# The total time one attempt (or destination test) may take, whatever the protocol.
APERTUR_DELIVERY_ATTEMPT_TIMEOUT = float(os.environ.get("APERTUR_DELIVERY_ATTEMPT_TIMEOUT", 60))
# How long a delivery worker thread keeps an idle SFTP connection for its next attempt to the same destination
# (docs/destinations.md); 0: a connection per attempt.
APERTUR_SFTP_KEEPALIVE_SECONDS = float(os.environ.get("APERTUR_SFTP_KEEPALIVE_SECONDS", 30))
# Fairness between tenants: attempts in flight per destination and per project; one over the cap waits a few
# seconds (not an attempt, not a failure).
APERTUR_DESTINATION_CONCURRENCY = env_int("APERTUR_DESTINATION_CONCURRENCY", 2)
APERTUR_PROJECT_CONCURRENCY = env_int("APERTUR_PROJECT_CONCURRENCY", 4)
APERTUR_CONCURRENCY_DEFER_SECONDS = float(os.environ.get("APERTUR_CONCURRENCY_DEFER_SECONDS", 2))
# Event webhooks' attempts in flight: per webhook, and per project (docs/api.md "Event webhooks").
APERTUR_EVENT_WEBHOOK_CONCURRENCY = env_int("APERTUR_EVENT_WEBHOOK_CONCURRENCY", 2)
APERTUR_EVENT_PROJECT_CONCURRENCY = env_int("APERTUR_EVENT_PROJECT_CONCURRENCY", 4)
# An event waiting for an earlier one of its session is rung when that one ends; the sweeper looks again after this.
APERTUR_EVENT_WAIT_SAFETY_SECONDS = float(os.environ.get("APERTUR_EVENT_WAIT_SAFETY_SECONDS", 600))


def _oauth_providers() -> dict[str, dict[str, str]]:
    """APERTUR_OAUTH_<PROVIDER>_<FIELD>, e.g. APERTUR_OAUTH_GOOGLE_DRIVE_CLIENT_ID → {"google_drive": {"client_id"}}.

    The endpoint fields override a provider's documented URLs (tests point them at local servers)."""
    fields = ("client_id", "client_secret", "authorize_url", "token_url", "revoke_url", "api_base", "upload_base")
    providers: dict[str, dict[str, str]] = {}
    for name, value in os.environ.items():
        if not name.startswith("APERTUR_OAUTH_") or not value:
            continue
        rest = name.removeprefix("APERTUR_OAUTH_").lower()
        field = next((field for field in fields if rest.endswith(f"_{field}")), None)
        if field:
            providers.setdefault(rest.removesuffix(f"_{field}"), {})[field] = value
    return providers


APERTUR_OAUTH = _oauth_providers()
# How long a started OAuth connection may take to come back to the callback (docs/destinations.md).
APERTUR_OAUTH_STATE_TTL_SECONDS = env_int("APERTUR_OAUTH_STATE_TTL_SECONDS", 600)
APERTUR_SWEEP_INTERVAL_SECONDS = float(os.environ.get("APERTUR_SWEEP_INTERVAL_SECONDS", 5))
APERTUR_SWEEP_RESEND_AFTER_SECONDS = float(os.environ.get("APERTUR_SWEEP_RESEND_AFTER_SECONDS", 60))
APERTUR_EMBEDDED_WORKER_THREADS = env_int("APERTUR_EMBEDDED_WORKER_THREADS", 8)
# A worker process of its own (`rundramatiq`) keeps each thread's database connection this long (Django's
# CONN_MAX_AGE), instead of a new one per message: docs/deployment.md "Several processes or machines".
APERTUR_WORKER_DB_CONN_MAX_AGE = env_int("APERTUR_WORKER_DB_CONN_MAX_AGE", 300)
APERTUR_OUTBOUND_TIMEOUT_SECONDS = float(os.environ.get("APERTUR_OUTBOUND_TIMEOUT_SECONDS", 30))
# A request body that stops arriving for this long is answered 408 and dropped (slow-body clients).
APERTUR_BODY_IDLE_TIMEOUT_SECONDS = float(os.environ.get("APERTUR_BODY_IDLE_TIMEOUT_SECONDS", 30))
# A PEM bundle of the certificate authorities HTTPS destinations are verified against (default: the public CAs).
APERTUR_OUTBOUND_CA_BUNDLE = os.environ.get("APERTUR_OUTBOUND_CA_BUNDLE", "")
# azure_blob: an image up to the threshold is one Put Blob (sent from memory), a larger one is streamed in blocks.
APERTUR_AZURE_BLOCK_THRESHOLD_BYTES = env_int("APERTUR_AZURE_BLOCK_THRESHOLD_BYTES", 4 * 1024 * 1024)
APERTUR_AZURE_BLOCK_SIZE_BYTES = env_int("APERTUR_AZURE_BLOCK_SIZE_BYTES", 4 * 1024 * 1024)
# google_drive: an image up to the threshold is one multipart upload, a larger one a resumable upload in chunks
# (a multiple of 256 KiB, as Drive requires for every chunk but the last).
APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES = env_int(
    "APERTUR_GOOGLE_DRIVE_RESUMABLE_THRESHOLD_BYTES", 5 * 1024 * 1024
)
APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES = env_int("APERTUR_GOOGLE_DRIVE_CHUNK_SIZE_BYTES", 8 * 1024 * 1024)
# box: an image of at least this size goes up in a chunked upload session (Box takes sessions only from 20,000,000
# bytes: a lower value makes such uploads fail), a smaller one in one multipart upload.
APERTUR_BOX_CHUNKED_THRESHOLD_BYTES = env_int("APERTUR_BOX_CHUNKED_THRESHOLD_BYTES", 20_000_000)
# dropbox: an image up to the threshold is one files/upload, a larger one goes in an upload session in chunks. The
# SDK sends bodies from memory, so both bound what an attempt holds; Dropbox takes at most 150 MiB per request.
APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES = env_int("APERTUR_DROPBOX_UPLOAD_THRESHOLD_BYTES", 8 * 1024 * 1024)
APERTUR_DROPBOX_CHUNK_SIZE_BYTES = env_int("APERTUR_DROPBOX_CHUNK_SIZE_BYTES", 8 * 1024 * 1024)
# onedrive: an image up to the threshold is one simple upload (Graph's limit is 4 MiB); a larger one goes through an
# upload session in chunks of this size, rounded down to whole 320 KiB units as Graph requires.
APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES = env_int("APERTUR_ONEDRIVE_SIMPLE_UPLOAD_MAX_BYTES", 4 * 1024 * 1024)
APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES = env_int("APERTUR_ONEDRIVE_CHUNK_SIZE_BYTES", 10 * 320 * 1024)
APERTUR_MAX_IMAGES_CAP = env_int("APERTUR_MAX_IMAGES_CAP", 100)
# Event webhooks a project may have: every event is one request per subscribed webhook (docs/api.md "Event webhooks").
APERTUR_EVENT_WEBHOOKS_PER_PROJECT = env_int("APERTUR_EVENT_WEBHOOKS_PER_PROJECT", 20)
APERTUR_MAX_IMAGE_SIZE_MB = env_int("APERTUR_MAX_IMAGE_SIZE_MB", 20)
APERTUR_MAX_IMAGE_SIZE_MB_CAP = env_int("APERTUR_MAX_IMAGE_SIZE_MB_CAP", 100)
APERTUR_MAX_IMAGE_PIXELS = env_int("APERTUR_MAX_IMAGE_PIXELS", 50_000_000)
APERTUR_DECODE_CONCURRENCY = env_int("APERTUR_DECODE_CONCURRENCY", 2)
APERTUR_DECODE_TIMEOUT_SECONDS = float(os.environ.get("APERTUR_DECODE_TIMEOUT_SECONDS", 10))
APERTUR_DECODE_QUEUE_TIMEOUT_SECONDS = float(os.environ.get("APERTUR_DECODE_QUEUE_TIMEOUT_SECONDS", 15))
APERTUR_DEFAULT_EXPIRY_HOURS = env_int("APERTUR_DEFAULT_EXPIRY_HOURS", 24)
APERTUR_MAX_EXPIRY_HOURS = 168
APERTUR_PASSWORD_MAX_ATTEMPTS = env_int("APERTUR_PASSWORD_MAX_ATTEMPTS", 10)
APERTUR_PASSWORD_LOCKOUT_SECONDS = env_int("APERTUR_PASSWORD_LOCKOUT_SECONDS", 15 * 60)
APERTUR_RATE_LIMITS = {
    "session_create": env_int("APERTUR_RATE_LIMIT_SESSION_CREATE", 100),
    "session_read": env_int("APERTUR_RATE_LIMIT_SESSION_READ", 300),
    "default": env_int("APERTUR_RATE_LIMIT_DEFAULT", 200),
    "upload_page": env_int("APERTUR_RATE_LIMIT_UPLOAD_PAGE", 120),
}
APERTUR_STAGING_RETENTION_DAYS = env_int("APERTUR_STAGING_RETENTION_DAYS", 7)
# Events (and their deliveries to event webhooks) are kept this long once every delivery is final.
APERTUR_EVENT_LOG_RETENTION_DAYS = env_int("APERTUR_EVENT_LOG_RETENTION_DAYS", 30)
# Live events and long polls (docs/api.md "Live events", "Pull delivery").
APERTUR_EVENT_REPLAY_SECONDS = env_int("APERTUR_EVENT_REPLAY_SECONDS", 300)
APERTUR_EVENT_REPLAY_MAX = env_int("APERTUR_EVENT_REPLAY_MAX", 2000)  # per session, in-process transport
APERTUR_EVENT_BUS_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("APERTUR_EVENT_BUS_CONNECT_TIMEOUT_SECONDS", 5))
APERTUR_POLL_FROM_MAX_SECONDS = float(os.environ.get("APERTUR_POLL_FROM_MAX_SECONDS", 300))
APERTUR_SSE_HEARTBEAT_SECONDS = float(os.environ.get("APERTUR_SSE_HEARTBEAT_SECONDS", 15))
# How often an open event stream asks again whether its key or signed-in user may still watch the session.
APERTUR_SSE_RECHECK_SECONDS = float(os.environ.get("APERTUR_SSE_RECHECK_SECONDS", 60))
APERTUR_POLL_LEASE_SECONDS = float(os.environ.get("APERTUR_POLL_LEASE_SECONDS", 300))
APERTUR_POLL_MAX_TIMEOUT_SECONDS = env_int("APERTUR_POLL_MAX_TIMEOUT_SECONDS", 30)
APERTUR_ENCRYPTION_KEY_GRACE_HOURS = env_int("APERTUR_ENCRYPTION_KEY_GRACE_HOURS", 168)
APERTUR_ENCRYPTION_KEY_BITS = env_int("APERTUR_ENCRYPTION_KEY_BITS", 3072)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A server error's line names the path too: a mailed link's key or a `?token=` must not land in the log there
    # either (apertur/request_logging.py).
    "filters": {"redact_tokens": {"()": "apertur.request_logging.RedactTokens"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_tokens"]},
        # Refused requests (bad Host, oversized or garbled bodies) as one WARNING line, not an ERROR traceback:
        # it rewrites the record before the `django` and root loggers' handlers see it, so both keep propagating.
        "client_errors": {"class": "apertur.request_logging.ClientErrorsOnOneLine"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("APERTUR_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Azure SDK logs every request and response at INFO (secrets redacted).
        "azure": {"level": "WARNING"},
        # urllib3's DEBUG lines show whole request URLs, an Azure SAS signature in the query included.
        "urllib3": {"level": "INFO"},
        "django.request": {"handlers": ["client_errors"]},
        "django.security": {"handlers": ["client_errors"]},
    },
}
