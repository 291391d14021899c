"""Settings for the portal, all read from the environment (and an optional `.env` file).

The defaults give an embedded first run: SQLite in the project folder, tasks executed
in-process and a local-memory cache, so nothing but Python is needed.
"""

import datetime as dt
import logging
import secrets
from pathlib import Path

import environ
from celery.schedules import crontab

from portal.db.config import configure_postgresql, is_postgresql, is_runserver, process_kind
from portal.logs import log_format_from, logging_config
from portal.sentry import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

log = logging.getLogger("portal.settings")


def _development_secret_key() -> str:
    """A key generated once and kept beside the SQLite database, never committed."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    log.warning("SECRET_KEY is not set: using the development key kept in %s", path)
    return path.read_text().strip()


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
# Former keys, while what they signed or digested still matters (sessions; the keyed digests
# of deletion requests that the admin searches by external id).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "accounts.admin_site.StaffAdminConfig",  # django.contrib.admin, with the staff site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "accounts",
    "devices",
    "events",
    "console",  # the customer console: the top floor, nothing imports it
    "django_otp",  # staff two-factor sign-in (see "Staff sign-in" below)
    "django_otp.plugins.otp_totp",
    "axes",  # staff sign-in lockout; keep it last among the apps, as axes asks
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "portal.metrics.MetricsMiddleware",  # counts and times every answer (portal/metrics.py)
    "portal.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "console.middleware.ConsoleHeadersMiddleware",  # CSP, no framing, no caching: /console/
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "portal.sessions.IdleSessionMiddleware",  # sessions end after 12 idle hours
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified() for the staff admin
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a staff sign-in lockout into its page
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
APPEND_SLASH = False

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
            ],
        },
    },
]

# Database. On PostgreSQL a hung server costs a bounded time (portal/db, docs/DEPLOY.md):
# connect timeout, TCP keepalives, and a statement timeout, short for web processes and long
# for batch ones (Celery, management commands; `PORTAL_PROCESS` or the command line decides),
# which the guarded backend also enforces on the client when the server cannot answer.
# runserver starts a thread per request, so it keeps no connection open (CONN_MAX_AGE 0).
PORTAL_PROCESS = process_kind()
DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=3)
DATABASE_STATEMENT_TIMEOUT = env.float("DATABASE_STATEMENT_TIMEOUT", default=5.0)
DATABASE_BATCH_STATEMENT_TIMEOUT = env.float("DATABASE_BATCH_STATEMENT_TIMEOUT", default=600.0)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if is_postgresql(DATABASES["default"]):
    configure_postgresql(
        DATABASES["default"],
        connect_timeout=DATABASE_CONNECT_TIMEOUT,
        statement_timeout=(
            DATABASE_STATEMENT_TIMEOUT
            if PORTAL_PROCESS == "web"
            else DATABASE_BATCH_STATEMENT_TIMEOUT
        ),
        conn_max_age=env.int("CONN_MAX_AGE", default=0 if is_runserver() else 60),
        prepared_statements=env.bool("DATABASE_PREPARED_STATEMENTS", default=None),
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Staff sign-in to the admin (accounts/staff_signin.py, accounts/staff_2fa.py).
# Second factor: a TOTP authenticator app, enrolled at the first sign-in, asked at every one.
STAFF_2FA_REQUIRED = env.bool("STAFF_2FA_REQUIRED", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("STAFF_2FA_ISSUER", default="Portal admin")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Lockout (django-axes) after STAFF_LOGIN_FAILURE_LIMIT failures within STAFF_LOCKOUT_MINUTES,
# counted per staff account and, separately, per client address (NUM_PROXIES decides which
# address counts). Attempts are kept in the database, so signing in never needs Redis.
# Unlock: `manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` / `axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("STAFF_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("STAFF_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_ONLY_ADMIN_SITE = True
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "portal.throttling.client_address"
AXES_USERNAME_CALLABLE = "accounts.staff_signin.attempted_staff_username"
AXES_LOCKOUT_CALLABLE = "accounts.staff_signin.lockout_response"
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "csrfmiddlewaretoken"]
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are audit events instead
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False

# The customer console (console/, README "The customer console"). Its people sign in with
# e-mail, password and a TOTP authenticator; failed sign-ins lock the account and the client
# address (console/services/lockout.py, not axes, which stays the admin's).
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="http://localhost:8000")
CONSOLE_INVITATION_HOURS = env.int("CONSOLE_INVITATION_HOURS", default=72)
CONSOLE_SIGN_IN_FAILURE_LIMIT = env.int("CONSOLE_SIGN_IN_FAILURE_LIMIT", default=5)
CONSOLE_LOCKOUT_MINUTES = env.int("CONSOLE_LOCKOUT_MINUTES", default=15)
# Password-reset mails per hour, for one account and asked from one client address.
CONSOLE_RESET_MAILS_PER_HOUR = env.int("CONSOLE_RESET_MAILS_PER_HOUR", default=3)
CONSOLE_RESET_MAILS_PER_ADDRESS_HOUR = env.int("CONSOLE_RESET_MAILS_PER_ADDRESS_HOUR", default=20)
CONSOLE_TOTP_ISSUER = env.str("CONSOLE_TOTP_ISSUER", default="Portal console")
# The beat's sweep of expired sessions and of the console's bookkeeping (console/tasks.py).
CONSOLE_INVITATION_RETENTION = dt.timedelta(days=30)  # past expiry, whatever became of it
CONSOLE_SWEEP_BATCH_SIZE = 1000
PASSWORD_RESET_TIMEOUT = 3600  # a reset link works for an hour

# Sessions (staff admin and console alike): HttpOnly, SameSite=Lax, Secure when served over
# https (below), ended after 12 idle hours (portal/sessions.py keeps them alive while used).
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One way to write a time on every page the portal renders: "2026-11-30 06:40 UTC".
FORMAT_MODULE_PATH = ["portal.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve static files from the apps directly, so the admin and /api/docs/ work on a first
# run without collectstatic; production runs collectstatic and gets compressed files.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# The API's bodies are small JSON documents; anything larger is refused early with 413.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "portal.parsers.JSONFallbackNegotiation",
    # Authorization denies by default: a view that does not declare who may call it (API key
    # and scope, access token, or an explicit `Public` with the reason) refuses everyone.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["portal.authorization.DenyUndeclared"],
    "UNAUTHENTICATED_USER": None,
    # Client address for the /sdk/ throttle: X-Forwarded-For is trusted only for as many
    # hops as there are proxies of ours in front; with none, a client could name any address.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "EXCEPTION_HANDLER": "portal.errors.exception_handler",
    # No OPTIONS introspection: it is not in the contract, and on the HTML docs page DRF's
    # metadata answer cannot be rendered at all (a 500). OPTIONS answers 405 like any other.
    "DEFAULT_METADATA_CLASS": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%SZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Portal API",
    "DESCRIPTION": (
        "Links a customer's own users (external ids) to platform users through short-lived "
        "authentication codes. Every error answer is the JSON envelope `Error`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs views are public on purpose: the document describes the public
    # contract and holds no data; customers read it before they hold a key.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["portal.authorization.Public"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The payload of the webhooks (events/schema.py), which OpenAPI 3.0 has no section for.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "events.schema.add_webhook_event",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ErrorCodeEnum": "portal.errors.ErrorCode",
        "InactiveReasonEnum": "devices.models.InactiveReason",
        "UserStatusEnum": "accounts.models.UserStatus",
    },
}

# HTTPS in production (docs/DEPLOY.md, "The web process"). TLS ends at the proxy in front, so
# whether a request came over https is read from X-Forwarded-Proto, but only when NUM_PROXIES
# says a proxy of ours sets it: with none, any client could declare plain http secure.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if REST_FRAMEWORK["NUM_PROXIES"] > 0 else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Load balancers probe health over plain http: those two are never redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Session and CSRF cookies are https-only by default when not DEBUG and the portal is served
# beyond this machine (ALLOWED_HOSTS names another host) or redirects to https. The README's
# first run, plain http on 127.0.0.1 with the default hosts, keeps ordinary cookies so that
# staff can still sign in to /admin/ there.
_served_over_https = not DEBUG and (
    SECURE_SSL_REDIRECT or not set(ALLOWED_HOSTS) <= {"localhost", "127.0.0.1", "[::1]"}
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_served_over_https)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_served_over_https)
# Origins (scheme included) whose forms may post here when the proxy does not pass the
# original Host header through, e.g. `https://portal.example.com`.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

AUTH_CODE_TTL_SECONDS = env.int("AUTH_CODE_TTL_SECONDS", default=600)
ACCESS_TOKEN_TTL_SECONDS = env.int("ACCESS_TOKEN_TTL_SECONDS", default=7 * 24 * 3600)
API_KEY_DEFAULT_EXPIRY_DAYS = env.int("API_KEY_DEFAULT_EXPIRY_DAYS", default=365)
MAX_ACTIVE_API_KEYS_PER_APP = env.int("MAX_ACTIVE_API_KEYS_PER_APP", default=10)
AUTH_CODE_RETENTION = dt.timedelta(days=env.int("AUTH_CODE_RETENTION_DAYS", default=7))
AUTH_CODE_SWEEP_BATCH_SIZE = env.int("AUTH_CODE_SWEEP_BATCH_SIZE", default=5000)
API_KEY_REMINDER_DAYS = env.list("API_KEY_REMINDER_DAYS", cast=int, default=[14, 7])
THROTTLE_API_KEY_RATE = env.str("THROTTLE_API_KEY_RATE", default="6000/min")
THROTTLE_SDK_RATE = env.str("THROTTLE_SDK_RATE", default="600/min")
# Failed API-key checks: per attempted key id that exists, and per client address for key
# ids that do not (looser: many clients may share an address). They refuse failures only.
THROTTLE_AUTH_FAILURE_RATE = env.str("THROTTLE_AUTH_FAILURE_RATE", default="60/min")
THROTTLE_AUTH_FAILURE_ADDRESS_RATE = env.str(
    "THROTTLE_AUTH_FAILURE_ADDRESS_RATE", default="600/min"
)
# How long a rate-limit check waits for Redis before letting the request through (seconds).
THROTTLE_REDIS_TIMEOUT = env.float("THROTTLE_REDIS_TIMEOUT", default=0.1)

# Celery: Redis as broker when configured; otherwise tasks run in-process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request that enqueues a task (a deletion's purge) waits at most about a second for a
# broker that does not answer; what it could not send, a sweep finds later.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
}
# Celery's log lines go through LOGGING too: JSON, with the task's request id.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
CELERY_BEAT_SCHEDULE = {
    "sweep-auth-codes": {
        "task": "accounts.tasks.sweep_auth_codes",
        "schedule": 60.0,
    },
    "sweep-deletion-requests": {
        "task": "accounts.tasks.sweep_deletion_requests",
        "schedule": 300.0,
    },
    "api-key-expiry-notices": {
        "task": "accounts.tasks.send_key_expiry_notices",
        "schedule": crontab(hour=8, minute=0),
    },
}

# Webhooks (events/, docs/WEBHOOKS.md). Signing secrets are encrypted at rest with
# WEBHOOK_ENCRYPTION_KEY (Fernet keys, comma-separated: the first encrypts, all decrypt) or,
# unset, a key derived from SECRET_KEY. Receivers must be https on a public address unless
# these say otherwise (development, tests).
WEBHOOK_ENCRYPTION_KEY = env.list("WEBHOOK_ENCRYPTION_KEY", default=[])
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_RETRY_FOR = dt.timedelta(days=3)
WEBHOOK_LOG_RETENTION = dt.timedelta(days=30)
# How long an attempt under way holds its delivery: past it, a worker that died mid-attempt
# is taken for dead and the sweep sends again (the client gives up after 10 s).
WEBHOOK_DELIVERY_LEASE = dt.timedelta(seconds=env.int("WEBHOOK_DELIVERY_LEASE_SECONDS", default=60))
WEBHOOK_SWEEP_SECONDS = env.float("WEBHOOK_SWEEP_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["sweep-webhooks"] = {
    "task": "events.tasks.sweep_webhooks",
    "schedule": WEBHOOK_SWEEP_SECONDS,
}
CELERY_BEAT_SCHEDULE["sweep-console"] = {
    "task": "console.tasks.sweep_console",
    "schedule": 600.0,
}
CELERY_BEAT_SCHEDULE["sweep-webhook-log"] = {
    "task": "events.tasks.sweep_webhook_log",
    "schedule": 3600.0,
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Operations: /metrics answers only a scraper sending `Authorization: Bearer METRICS_TOKEN`
# (unset: 404, like any unknown path). PROMETHEUS_MULTIPROC_DIR is read by prometheus-client
# itself (portal/metrics.py, docs/DEPLOY.md).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Error reports to Sentry when SENTRY_DSN is set, initialised here so that the web processes
# and the Celery worker and beat (which all load these settings) report alike.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
init_sentry(
    dsn=SENTRY_DSN,
    environment=env.str("SENTRY_ENVIRONMENT", default=""),
    traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
)

# One JSON object per line in production, readable text under DEBUG; every line carries the
# request id of its request or task (portal/logs.py).
LOG_FORMAT = log_format_from(env)
LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))
